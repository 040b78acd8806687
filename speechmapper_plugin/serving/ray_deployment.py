"""``speechmapper serve --ray --replicas N``: the same API as Ray Serve replicas.

Each replica loads its own :class:`SpeechEngine` (one GPU per replica where
the cluster has GPUs) and serves :func:`create_app`'s FastAPI application on
it through ``serve.ingress``; Ray's proxy spreads requests over the replicas.

Why ``serve.ingress`` and not ``@serve.batch``: the HTTP parsing, the
OpenAI-shaped refusals and the batching (grouping by generation settings and
system prompt, seeded sampling alone, a failing batch retried one by one) are
then the same code as the single-process server, tested once. ``@serve.batch``
would be a second batcher that has to repeat that grouping. Ray supplies what
one process cannot: replicas, routing across them, and a per-replica bound on
requests in flight (``max_ongoing_requests``, twice the engine's batch size)
so that a replica holds enough requests to fill its batches.

The projector, ``--asset-dir`` directories and an export directory must be at
the same path on every node that runs a replica (a shared file system).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final, cast

from fastapi import FastAPI, Request, Response
from ray import serve

from speechmapper_plugin.serving.options import ServeOptions

REPLICA_HEADER: Final = "x-speechmapper-replica"
"""The response header naming the replica that answered (its Ray replica id)."""

APP_NAME: Final = "speechmapper"


@serve.ingress()
class SpeechMapperReplica:
    """One replica: its own engine behind the same FastAPI app as
    ``speechmapper serve``; every response names the replica."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.engine = options.load_engine()
        context = serve.get_replica_context()
        self.replica_id = f"{context.replica_id.unique_id}@{os.getpid()}"

    def __serve_build_asgi_app__(self) -> FastAPI:
        app = self.options.create_app(self.engine)
        replica_id = self.replica_id

        @app.middleware("http")
        async def name_replica(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            response = await call_next(request)
            response.headers[REPLICA_HEADER] = replica_id
            return response

        return app

    def __del__(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()


def cluster_gpus() -> int:
    """GPUs in the Ray cluster this process is connected to."""
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def gpus_per_replica(options: ServeOptions, replicas: int, gpus: int) -> int:
    """1 where the cluster has GPUs and the device is not forced to CPU, else 0.

    :raises ValueError: for more replicas than GPUs, or ``--device cuda`` on a
        cluster without GPUs (Ray would wait for them forever).
    """
    device = (options.device or "").split(":")[0]
    if device == "cpu":
        return 0
    if gpus == 0:
        if device == "cuda":
            raise ValueError(
                "`--device cuda` but the Ray cluster has no GPUs: start the workers with GPUs (`ray start --num-gpus N`) or serve on CPU (`--device cpu`)."
            )
        return 0
    if replicas > gpus:
        raise ValueError(
            f"{replicas} replicas need {replicas} GPUs (one each), but the Ray cluster has {gpus}: pass `--replicas {gpus}` or add GPU nodes."
        )
    return 1


def ray_application(
    options: ServeOptions, *, replicas: int, gpus: int
) -> serve.Application:
    """The deployment of ``replicas`` replicas of ``options``, ready for ``serve.run``.

    :param gpus: The GPUs each replica takes (0 or 1).
    """
    if replicas < 1:
        raise ValueError(f"`--replicas` must be positive, but is {replicas}.")
    actor_options: dict[str, Any] = {"num_gpus": gpus} if gpus else {"num_cpus": 1}
    # (Ray's stubs type a class that serve.ingress wrapped as a decorator.)
    deployment = cast(serve.Deployment, serve.deployment(SpeechMapperReplica)).options(
        name="SpeechMapper",
        num_replicas=replicas,
        ray_actor_options=actor_options,
        max_ongoing_requests=2 * options.max_batch_size,
    )
    return deployment.bind(options)


def start(
    options: ServeOptions, *, replicas: int, host: str, port: int, gpus: int
) -> None:
    """Start Serve's HTTP proxy on ``host:port`` and deploy the replicas
    (returns once every replica answers; ``ray.init`` first)."""
    serve.start(http_options={"host": host, "port": port})
    serve.run(
        ray_application(options, replicas=replicas, gpus=gpus),
        name=APP_NAME,
        route_prefix="/",
    )


def serve_on_ray(args: argparse.Namespace) -> int:
    """``speechmapper serve --ray``: deploy and serve until interrupted."""
    import ray

    options = ServeOptions.from_args(args)
    missing = [d for d in options.asset_dirs if not Path(d).is_dir()]
    if missing:
        print(f"error: {missing[0]} is not a directory.", file=sys.stderr)
        return 1
    if args.replicas < 1:
        print(
            f"error: `--replicas` must be positive, but is {args.replicas}.",
            file=sys.stderr,
        )
        return 1

    try:
        options.check_cards()
    except ValueError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 1

    ray.init(address=args.address, include_dashboard=False)
    try:
        gpus = gpus_per_replica(options, args.replicas, cluster_gpus())
    except ValueError as ex:
        print(f"error: {ex}", file=sys.stderr)
        ray.shutdown()
        return 1
    try:
        start(
            options, replicas=args.replicas, host=args.host, port=args.port, gpus=gpus
        )
    except RuntimeError as ex:
        print(
            f"error: {ex} (a replica failed to load: its traceback is in the log above, from ServeController or ServeReplica)",
            file=sys.stderr,
        )
        serve.delete(APP_NAME)
        ray.shutdown()
        return 1

    print(
        f"Serving on Ray Serve: {args.replicas} replica(s)"
        + (", one GPU each" if gpus else " on CPU")
        + f", on http://{args.host}:{args.port}/v1"
        + (" (API key required)" if options.api_key else ""),
        file=sys.stderr,
        flush=True,
    )
    try:
        _wait_forever()
    except KeyboardInterrupt:
        pass
    finally:
        # Only this application: a shared cluster may serve others.
        serve.delete(APP_NAME)
        ray.shutdown()
    return 0


def _wait_forever() -> None:
    """Block until SIGINT or SIGTERM (a process manager's stop, or a shell
    that started this in the background with SIGINT ignored)."""
    import signal
    import threading

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, interrupt)
    threading.Event().wait()
