"""``speechmapper serve PROJECTOR``: the OpenAI-compatible speech API.

    speechmapper serve EXPORT_DIR [--port 8000] [--api-key KEY]
    speechmapper serve my_projector_card --llm speechmapper_llama3_1_8b_instruct

``PROJECTOR`` is an export directory (``speechmapper export``; its
``config.json`` names the LLM and its card the speech encoder it was trained
on) or a projector's asset card name (``--asset-dir`` adds card directories).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Final

API_KEY_ENV: Final = "SPEECHMAPPER_API_KEY"


def build_parser(prog: str = "speechmapper serve") -> argparse.ArgumentParser:
    from speechmapper_plugin.serving.options import (
        add_model_arguments,
        add_ray_arguments,
    )

    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a trained projector with its speech encoder and LLM as an OpenAI-compatible API (/v1/audio/transcriptions, /v1/audio/translations, /v1/chat/completions, /v1/models, /health).",
    )
    add_model_arguments(
        parser, max_new_tokens_note="a request's max_tokens may lower it"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--model-name",
        help="the model id clients send (default: the projector's card name)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require `Authorization: Bearer KEY` on /v1 (default: ${API_KEY_ENV}; none: no key)",
    )
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=10.0,
        help="how long a request waits for others to batch with",
    )
    parser.add_argument(
        "--step-delay-ms",
        type=float,
        default=0.0,
        help=argparse.SUPPRESS,  # slows streamed decoding down: tests, demos
    )
    parser.add_argument(
        "--max-upload-mb", type=float, default=25.0, help="largest audio file accepted"
    )
    parser.add_argument(
        "--max-audio-seconds", type=float, default=300.0, help="longest audio accepted"
    )
    add_ray_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.ray:
        from speechmapper_plugin.serving.ray_deployment import serve_on_ray

        return serve_on_ray(args)

    import uvicorn

    from speechmapper_plugin.serving.options import ServeOptions

    try:
        options = ServeOptions.from_args(args)
        options.segmenter.check()
        engine = options.load_engine()
    except (ValueError, OSError) as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 1

    app = options.create_app(engine)
    print(
        f"Serving `{engine.model_id}` on http://{args.host}:{args.port}/v1"
        + (" (API key required)" if args.api_key else ""),
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
