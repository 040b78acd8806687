"""The SLURM driver (scripts/slurm): every script parses, the dry run prints
the whole chain (afterok dependencies, no sbatch called) and every
``speechmapper`` command it would run names a real subcommand and a config
file that exists; the slow test has each recipe parse its overrides."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from recipes.cli import SUBCOMMANDS
from tests.support.in_process import run_speechmapper

REPO = Path(__file__).resolve().parents[1]
SLURM = REPO / "scripts" / "slurm"
STEPS = ["extract", "stage1", "instructions", "stage2", "evaluate", "tables"]


def _config(tmp_path: Path, **settings: str) -> Path:
    """The example settings with this checkout as SM_REPO (plus ``settings``)."""
    lines = [f"source {shlex.quote(str(SLURM / 'config.example.sh'))}"]
    lines.append(f"SM_REPO={shlex.quote(str(REPO))}")
    lines += [f"{k}={shlex.quote(v)}" for k, v in settings.items()]
    path = tmp_path / "config.sh"
    path.write_text("\n".join(lines) + "\n")
    return path


def _dry_run(
    tmp_path: Path, *args: str, **settings: str
) -> subprocess.CompletedProcess[str]:
    # An sbatch that records any call: the dry run must never submit.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "sbatch"
    fake.write_text(f"#!/bin/bash\necho called >> {tmp_path / 'sbatch_calls'}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        [
            "bash",
            str(SLURM / "submit.sh"),
            "--config",
            str(_config(tmp_path, **settings)),
            "--dry-run",
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert not (tmp_path / "sbatch_calls").exists()
    return done


def _commands(output: str) -> list[list[str]]:
    return [
        shlex.split(line)
        for line in output.splitlines()
        if line.startswith("    speechmapper ")
    ]


def _sbatch_lines(output: str) -> list[list[str]]:
    return [
        shlex.split(line) for line in output.splitlines() if line.startswith("sbatch ")
    ]


@pytest.mark.parametrize(
    "script", sorted(p.name for p in SLURM.iterdir() if p.suffix in {".sh", ".sbatch"})
)
def test_script_parses(script: str) -> None:
    done = subprocess.run(
        ["bash", "-n", str(SLURM / script)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_every_step_has_its_script() -> None:
    assert sorted(p.stem for p in SLURM.glob("*.sbatch")) == sorted(STEPS)


def test_dry_run_prints_the_chain(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, SM_WANDB_PROJECT="sm")
    assert done.returncode == 0, done.stderr
    sbatch = _sbatch_lines(done.stdout)
    assert [Path(c[-1]).stem for c in sbatch] == STEPS
    for i, command in enumerate(sbatch):
        dependency = [a for a in command if a.startswith("--dependency=")]
        if i == 0:
            assert dependency == []
        else:
            assert dependency == [f"--dependency=afterok:<{STEPS[i - 1]}>"]
    gpus = {
        Path(c[-1]).stem: next(
            (a.split("=")[1] for a in c if a.startswith("--gpus-per-node=")), "0"
        )
        for c in sbatch
    }
    assert gpus == {
        "extract": "8",
        "stage1": "4",
        "instructions": "0",
        "stage2": "1",
        "evaluate": "8",
        "tables": "0",
    }

    commands = _commands(done.stdout)
    assert [c[1] for c in commands] == [
        "extract",
        "extract",
        "stage1",
        "instructions",
        "instructions",
        "stage2",
        "evaluate",
        "evaluate",
    ]
    for command in commands:
        assert command[1] in SUBCOMMANDS
        if "--config-file" in command:
            config_file = Path(command[command.index("--config-file") + 1])
            assert config_file.is_file(), config_file
            assert REPO in config_file.parents
    stage1 = next(c for c in commands if c[1] == "stage1")
    assert stage1[stage1.index("--config-file") + 1].endswith(
        "recipes/stage1/configs/paper_llama3_1_8b.yaml"
    )
    # training logs: TensorBoard by default; W&B when a project is set
    for command in commands:
        if command[1] in {"stage1", "stage2"}:
            assert "common.metric_recorders.wandb.enabled=true" in command
            assert "common.metric_recorders.wandb.project=sm" in command


def test_without_wandb_project_no_wandb_and_eurollm_configs(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, SM_LLM="eurollm_9b")
    assert done.returncode == 0, done.stderr
    commands = _commands(done.stdout)
    assert not any("wandb" in arg for c in commands for arg in c)
    stage1 = next(c for c in commands if c[1] == "stage1")
    assert stage1[stage1.index("--config-file") + 1].endswith("paper_eurollm_9b.yaml")
    for command in commands:
        if command[1] in {"stage2", "evaluate"}:
            assert "llm.name=speechmapper_eurollm_9b_instruct" in command


def test_extra_overrides_reach_their_step(tmp_path: Path) -> None:
    done = _dry_run(
        tmp_path,
        SM_STAGE1_EXTRA="dataset.max_num_frames=4000",
        SM_STAGE2_EXTRA="trainer.data_parallelism=fsdp regime.num_steps=10",
        SM_EVAL_EXTRA="judge.enabled=false",
    )
    assert done.returncode == 0, done.stderr
    by_step = {c[1]: c for c in _commands(done.stdout)}
    assert "dataset.max_num_frames=4000" in by_step["stage1"]
    assert "trainer.data_parallelism=fsdp" in by_step["stage2"]
    assert "regime.num_steps=10" in by_step["stage2"]
    assert "judge.enabled=false" in by_step["evaluate"]
    assert "trainer.data_parallelism=fsdp" not in by_step["stage1"]


def test_from_starts_later_without_dependency(tmp_path: Path) -> None:
    done = _dry_run(tmp_path, "--from", "stage2")
    assert done.returncode == 0, done.stderr
    sbatch = _sbatch_lines(done.stdout)
    assert [Path(c[-1]).stem for c in sbatch] == ["stage2", "evaluate", "tables"]
    assert not any(a.startswith("--dependency") for a in sbatch[0])


@pytest.mark.parametrize(
    ("args", "settings", "message"),
    [
        (["--from", "stage3"], {}, "--from must be one of"),
        ([], {"SM_LLM": "gpt2"}, "SM_LLM must be llama3_1_8b or eurollm_9b"),
        ([], {"SM_TEST_SETS": "x=/data/x.csv"}, "neither a manifest"),
    ],
)
def test_bad_settings_are_refused(
    tmp_path: Path, args: list[str], settings: dict[str, str], message: str
) -> None:
    done = _dry_run(tmp_path, *args, **settings)
    assert done.returncode != 0
    assert message in done.stdout + done.stderr


@pytest.mark.slow
def test_recipes_accept_every_override(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each recipe structures its config with the dry run's overrides
    (``--dump-config`` refuses an unknown key), all four in this process."""
    done = _dry_run(tmp_path, SM_WANDB_PROJECT="sm", SM_LLM="eurollm_9b")
    monkeypatch.chdir(tmp_path)
    seen: set[str] = set()
    for command in _commands(done.stdout):
        name = command[1]
        if name in seen or name == "instructions":
            continue
        seen.add(name)
        args = [a for a in command[1:] if a != "--no-rich"]
        code, out = run_speechmapper(*args, "--no-rich", "--dump-config")
        assert code == 0, out[-4000:]
        if name in {"stage1", "stage2"}:
            assert re.search(r"wandb:\n\s+enabled: true", out)
    assert seen == {"extract", "stage1", "stage2", "evaluate"}


def test_submission_chains_job_ids_and_checks_settings_first(tmp_path: Path) -> None:
    """With a stand-in sbatch that hands out job ids 101, 102, ..."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "sbatch"
    fake.write_text(
        f'#!/bin/bash\necho "$@" >> {calls}\necho $((100 + $(wc -l < {calls})))\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def submit(**settings: str) -> subprocess.CompletedProcess[str]:
        config = _config(tmp_path, SM_OUT=str(tmp_path / "out"), **settings)
        return subprocess.run(
            ["bash", str(SLURM / "submit.sh"), "--config", str(config)],
            capture_output=True,
            text=True,
            env=env,
        )

    done = submit()
    assert done.returncode == 0, done.stderr
    submitted = calls.read_text().splitlines()
    assert len(submitted) == len(STEPS)
    for i, line in enumerate(submitted[1:], start=1):
        assert f"--dependency=afterok:{100 + i}" in line.split()
    assert (tmp_path / "out" / "logs").is_dir()

    calls.unlink()
    refused = submit(SM_TEST_SETS="x=/data/x.csv")
    assert refused.returncode == 2
    assert "nothing submitted" in refused.stderr
    assert not calls.exists()
