"""Stop before a step that writes gigabytes, on a disk that cannot hold them.

A full disk otherwise shows up minutes later as pip's "OSError: [Errno 28] No
space left on device" halfway through installing torch, or as a truncated
checkpoint deep in a run. Standard library only: it runs before the venv exists.

    python3 scripts/require_free_disk.py GIB PATH "WHAT" [--counting DIR]

``--counting DIR``: what ``DIR`` already holds counts towards ``GIB`` (a rerun
of a step that keeps its finished outputs needs only the rest).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

GIB = 1024**3


def existing_parent(path: Path) -> Path:
    """``path``, or its nearest parent that exists (what will be written is
    not there yet)."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def bytes_under(directory: Path) -> int:
    """The bytes of the regular files under ``directory`` (0 if it is absent)."""
    total = 0
    for root, _, files in os.walk(directory):
        for name in files:
            file = Path(root, name)
            if not file.is_symlink():
                total += file.stat().st_size
    return total


def shortfall(required: int, path: Path, counting: Path | None) -> tuple[int, int]:
    """``(bytes still needed, bytes free)`` for writing ``required`` bytes
    under ``path``; the first is 0 when they fit."""
    free = shutil.disk_usage(existing_parent(path)).free
    needed = required - (bytes_under(counting) if counting is not None else 0)
    return max(0, needed - free), free


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gib", type=float, help="GiB the step writes")
    parser.add_argument("path", type=Path, help="where it writes")
    parser.add_argument("what", help="the step, for the message")
    parser.add_argument("--counting", type=Path, default=None)
    args = parser.parse_args(argv)

    missing, free = shortfall(int(args.gib * GIB), args.path, args.counting)
    if missing:
        print(
            f"error: {args.what} needs about {args.gib:g} GiB of disk under "
            f"{existing_parent(args.path)}, which has {free / GIB:.1f} GiB free. "
            f"Free {missing / GIB:.1f} GiB or more (old venvs, build/ folders, "
            "checkpoints), then run it again.",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
