"""Export a trained projector or adapter as a self-contained directory.

    python -m speechmapper_plugin.export RUN_DIR OUT_DIR --name my_projector [--step N]

``RUN_DIR`` is a stage-1 or stage-2 output directory of a SpeechMapper
projector (``speechmapper``) or an adapter (``speech_adapter``); the last
checkpoint (or step ``N``) is exported with what the run trained it on. See
:mod:`speechmapper_plugin.export.projector` for the layout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speechmapper_plugin.export",
        description="Export a trained projector or adapter as a self-contained directory.",
    )
    parser.add_argument("run_dir", type=Path, help="a stage-1 or stage-2 output dir")
    parser.add_argument("output_dir", type=Path, help="where to write the export")
    parser.add_argument("--name", required=True, help="the asset card name")
    parser.add_argument("--step", type=int, help="default: the last checkpoint")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)

    checkpoints = args.run_dir / "checkpoints"
    if not (checkpoints / "model.yaml").is_file():
        parser.error(f"{checkpoints} holds no recipe checkpoints (no model.yaml).")

    from fairseq2 import init_fairseq2
    from fairseq2.composition import register_checkpoint_models

    init_fairseq2(extras=lambda c: register_checkpoint_models(c, checkpoints))

    import torch
    from fairseq2.error import OperationalError
    from fairseq2.models import load_model

    from speechmapper_plugin.export.projector import export_projector
    from speechmapper_plugin.export.provenance import read_run_provenance
    from speechmapper_plugin.models.adapters import is_projector

    card = "last_checkpoint" if args.step is None else f"checkpoint_step_{args.step}"
    try:
        projector = load_model(card, device=torch.device("cpu"))
    except (LookupError, OperationalError, ValueError) as ex:
        print(f"error: cannot load {card} from {checkpoints}: {ex}", file=sys.stderr)
        return 1
    if not is_projector(projector):
        print(
            f"error: {card} is a {type(projector).__name__}, not a SpeechMapper projector or an adapter.",
            file=sys.stderr,
        )
        return 1

    try:
        provenance = read_run_provenance(args.run_dir)
        if projector.config.speech_features is not None:
            # The checkpoint's record is what it was trained on; the run's
            # stores are only a guess (they may have been extracted again).
            provenance.sfm = None
        card_file = export_projector(
            projector,
            args.output_dir,
            name=args.name,
            provenance=provenance,
            overwrite=args.overwrite,
        )
    except ValueError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 1

    print(f"Exported {card} of {args.run_dir} as '{args.name}': {card_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
