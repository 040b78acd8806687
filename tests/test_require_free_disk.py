"""scripts/require_free_disk.py: `make setup` and `make rehearsal` stop with a
clear message on a disk that cannot hold what they write (CI once failed
18 s into the install with pip's "No space left on device")."""

from __future__ import annotations

import runpy
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "scripts" / "require_free_disk.py"
GIB = 1024**3

check = runpy.run_path(str(SCRIPT))


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def test_a_step_larger_than_the_free_space_falls_short_by_the_difference(
    tmp_path: Path,
) -> None:
    required = free_bytes(tmp_path) + 100 * GIB
    missing, _ = check["shortfall"](required, tmp_path / "not" / "yet", None)
    # Other processes write while the test runs: a few GiB of slack.
    assert 95 * GIB < missing < 105 * GIB


def test_what_the_step_already_wrote_counts_towards_it(tmp_path: Path) -> None:
    done = tmp_path / "build"
    done.mkdir()
    with open(done / "checkpoint.pt", "wb") as file:  # sparse: no real bytes
        file.truncate(200 * GIB)
    required = free_bytes(tmp_path) + 100 * GIB
    assert check["shortfall"](required, done, done)[0] == 0
    assert check["shortfall"](required, done, None)[0] > 95 * GIB


def test_the_command_names_the_step_the_place_and_what_to_free(
    tmp_path: Path,
) -> None:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "100000", str(tmp_path), "Installing the venv"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert "Installing the venv needs about 100000 GiB" in run.stderr
    assert str(tmp_path) in run.stderr
    assert "Free " in run.stderr

    fits = subprocess.run(
        [sys.executable, str(SCRIPT), "0.001", str(tmp_path), "A small step"],
        capture_output=True,
        text=True,
    )
    assert (fits.returncode, fits.stderr) == (0, "")
