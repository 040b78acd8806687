"""``speechmapper demo PROJECTOR``: try a trained projector in a browser.

    speechmapper demo EXPORT_DIR [--port 7860]
    speechmapper demo my_projector_card --asset-dir cards/ --device cuda

``PROJECTOR`` is loaded exactly as ``speechmapper serve`` loads it: an
export directory (``speechmapper export``) or a projector's asset card name,
with the LLM and speech encoder it names.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

DTYPES = ("float32", "bfloat16", "float16")


def build_parser(prog: str = "speechmapper demo") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="A Gradio page on a trained projector: upload or record audio, transcribe it, translate it or ask a question about it.",
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
        "--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)"
    )
    parser.add_argument("--port", type=int, default=7860)
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
        help="the most tokens an answer (or a segment's answer) may have",
    )
    parser.add_argument(
        "--segmenter",
        choices=("fixed", "vad"),
        default="fixed",
        help="how audio longer than the models take is cut: fixed windows or speech regions (Silero VAD)",
    )
    parser.add_argument(
        "--segment-seconds",
        type=float,
        default=30.0,
        help="longest segment (lowered to what the projector and LLM take)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from speechmapper_plugin.audio.segments import SegmenterConfig
    from speechmapper_plugin.serving.options import ServeOptions

    # serve's options (its loading), only the model's: nothing else of a
    # server applies to the page (one request at a time, no API key).
    projector = Path(args.projector)
    options = ServeOptions(
        projector=str(projector.resolve()) if projector.is_dir() else args.projector,
        asset_dirs=tuple(str(d.resolve()) for d in args.asset_dir),
        llm=args.llm,
        speech_encoder=args.speech_encoder,
        device=args.device,
        dtype=args.dtype,
        max_new_tokens=args.max_new_tokens,
        max_batch_size=1,
        segmenter=SegmenterConfig(
            kind=args.segmenter, max_seconds=args.segment_seconds
        ),
    )
    try:
        options.segmenter.check()
        engine = options.load_engine()
    except (ValueError, OSError) as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 1

    from speechmapper_plugin.demo.page import THEME, build_page

    # Gradio 6.17 names a status code Starlette 1.x deprecates, on every event.
    warnings.filterwarnings(
        "ignore", message="'HTTP_422_UNPROCESSABLE_ENTITY' is deprecated"
    )

    page = build_page(
        engine.pipeline, model_name=engine.model_id, segmenter=options.segmenter
    )
    print(
        f"Demo page of `{engine.model_id}` on http://{args.host}:{args.port}/",
        file=sys.stderr,
        flush=True,
    )
    try:
        page.queue().launch(
            server_name=args.host, server_port=args.port, theme=THEME, quiet=True
        )
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
