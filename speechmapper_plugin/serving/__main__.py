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
from pathlib import Path
from typing import Final

API_KEY_ENV: Final = "SPEECHMAPPER_API_KEY"

DTYPES: Final = ("float32", "bfloat16", "float16")


def build_parser(prog: str = "speechmapper serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a trained projector with its speech encoder and LLM as an OpenAI-compatible API (/v1/audio/transcriptions, /v1/audio/translations, /v1/chat/completions, /v1/models, /health).",
    )
    parser.add_argument(
        "projector",
        help="an export directory (speechmapper export) or a projector's asset card name",
    )
    parser.add_argument(
        "--llm", help="the LLM's card (default: the one the projector was trained for)"
    )
    parser.add_argument(
        "--speech-encoder",
        help="the speech encoder's card (default: the one the projector records)",
    )
    parser.add_argument(
        "--asset-dir",
        action="append",
        default=[],
        type=Path,
        help="a directory of asset cards to register (repeatable)",
    )
    parser.add_argument(
        "--model-name",
        help="the model id clients send (default: the projector's card name)",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"require `Authorization: Bearer KEY` on /v1 (default: ${API_KEY_ENV}; none: no key)",
    )
    parser.add_argument("--device", help="default: CUDA if available, else CPU")
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float32",
        help="of the projector and the LLM",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=256,
        help="the most tokens an answer may have (a request's max_tokens may lower it)",
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
    parser.add_argument(
        "--segmenter",
        choices=("fixed", "vad"),
        default="fixed",
        help="how audio longer than the models take is cut: fixed windows or "
        "speech regions (Silero VAD)",
    )
    parser.add_argument(
        "--segment-seconds",
        type=float,
        default=30.0,
        help="longest segment (lowered to what the projector and LLM take)",
    )
    from speechmapper_plugin.serving.options import add_ray_arguments

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
