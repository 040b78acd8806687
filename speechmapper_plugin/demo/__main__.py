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
from dataclasses import replace


def build_parser(prog: str = "speechmapper demo") -> argparse.ArgumentParser:
    from speechmapper_plugin.serving.options import add_model_arguments

    parser = argparse.ArgumentParser(
        prog=prog,
        description="A Gradio page on a trained projector: upload or record audio, transcribe it, translate it or ask a question about it.",
    )
    add_model_arguments(parser)
    parser.add_argument("--port", type=int, default=7860)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from speechmapper_plugin.serving.options import ServeOptions

    # serve's options (its loading), only the model's: nothing else of a
    # server applies to the page (one request at a time, no API key).
    options = replace(ServeOptions.model_options(args), max_batch_size=1)
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
