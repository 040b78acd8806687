"""Plans of recipe runs: what the σ/α sweep and the SFM x adapter x LLM grid
share, so that the two differ only in what they vary.

A plan is a list of :class:`RecipeStep`, each a ``python -m recipes.<name>``
command with its own output directory. A step is finished when its
``sweep_step.json`` marker exists (written after the recipe exits with 0); a
rerun skips it. A step that was interrupted has no marker and runs again in the
same directory, where fairseq2 resumes training from the last checkpoint and
the evaluate recipe scores only the missing utterances. A failed step is
reported and the steps that need it are not run; the others go on.

Held-out prompts: SpeechMapper's claim is that task-agnostic tuning
generalises to unseen wordings; a plan that evaluates on its training prompts
would reward settings that overfit the prompts (the paper's σ = 0 failure), so
no evaluation instruction may be a training instruction.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

import yaml
from fairseq2.utils.structured import StandardValueConverter
from fairseq2.utils.validation import StandardObjectValidator, ValidationResult

from speechmapper_plugin.data.instructions import read_instructions

REPO = Path(__file__).resolve().parents[1]

MARKER = "sweep_step.json"

SUMMARY_FILE = "summary.json"

StepKind = Literal["stage1", "stage2", "evaluate", "extract_features"]
"""The recipe a step runs (``extract_features``: the grid's cached extraction)."""


@dataclass(kw_only=True)
class RecipeRunSection:
    """How to run one recipe: its config file and extra ``--config`` overrides."""

    config_file: Path | None = None

    overrides: list[str] = field(default_factory=list)
    """``key=value`` items passed after ``--config`` (e.g. ``llm.name=...``)."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        if self.config_file is not None and not self.config_file.is_file():
            result.add_error(f"`config_file` {self.config_file} does not exist.")
        for item in self.overrides:
            if "=" not in item:
                result.add_error(f"The override {item!r} is not of the form key=value.")
        return result


@dataclass(kw_only=True)
class RunsConfig(ABC):
    """What every plan file has: processes per recipe run and the recipe
    sections whose keys the plan sets itself."""

    RESERVED: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Section name -> the ``--config`` keys the plan sets in that section."""

    nproc: int = 1
    """Processes per recipe run (``torchrun --nproc-per-node``)."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        for name, keys in self.RESERVED.items():
            for item in getattr(self, name).overrides:
                key = item.split("=", 1)[0].strip()
                if key in keys:
                    result.add_error(
                        f"`{name}.overrides`: {item!r} sets `{key}`, which the sweep sets for each run."
                    )
        if self.nproc < 1:
            result.add_error(f"`nproc` must be positive, but is {self.nproc}.")
        return result

    @abstractmethod
    def inputs(self) -> dict[str, Path]:
        """The files and directories the plan reads, by config key."""

    @abstractmethod
    def heldout_files(self) -> tuple[Path, Sequence[Path]]:
        """The held-out instruction file and the training instruction files."""


ConfigT = TypeVar("ConfigT", bound=RunsConfig)


def read_yaml(path: Path, label: str) -> Any:
    """:raises ValueError: If ``path`` cannot be read as YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as ex:
        raise ValueError(f"Cannot read the {label} config {path}: {ex}") from None


def to_config(data: Any, kind: type[ConfigT], path: Path, label: str) -> ConfigT:
    """``data`` as a validated ``kind``.

    :raises ValueError: If ``data`` has unknown keys or is invalid.
    """
    try:
        config = StandardValueConverter().structure(data, kind)
    except Exception as ex:  # fairseq2 raises StructureError and friends
        raise ValueError(f"The {label} config {path} is malformed: {ex}") from None

    assert isinstance(config, kind)

    try:
        StandardObjectValidator().validate(config)
    except Exception as ex:
        raise ValueError(f"The {label} config {path} is invalid: {ex}") from None

    return config


@dataclass(frozen=True)
class RecipeStep:
    kind: StepKind
    out_dir: Path
    command: list[str]
    needs: tuple[Path, ...] = ()
    """Output dirs of the steps this one starts from."""


@dataclass(frozen=True, kw_only=True)
class TrainedRun:
    """A sweep run or a grid cell: stage 1 and/or stage 2, then one
    evaluation of the last stage in ``<model_dir>/eval``."""

    stage1_dir: Path | None
    stage2_dir: Path | None

    @property
    def model_dir(self) -> Path:
        """The training run whose last checkpoint is evaluated."""
        model_dir = self.stage2_dir or self.stage1_dir
        assert model_dir is not None
        return model_dir

    @property
    def eval_dir(self) -> Path:
        return self.model_dir / "eval"

    def describe(self) -> dict[str, Any]:
        """What the run is (its α and σ, its SFM, adapter and LLM), ahead of
        its outcome in the results."""
        raise NotImplementedError


def launcher(nproc: int) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m"]
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), "--standalone", "--nproc-per-node", str(nproc), "-m"]


@dataclass
class StepList:
    """A plan's steps in the order they run, each a recipe command:
    ``recipes.<kind> OUT_DIR [--config-file FILE] --config OVERRIDES``, where
    the overrides are ``leading`` (the grid's card directories), the
    section's own, then what the plan sets for this run."""

    nproc: int
    leading: Sequence[str] = ()
    steps: list[RecipeStep] = field(default_factory=list)

    def add(
        self,
        kind: StepKind,
        out_dir: Path,
        section: RecipeRunSection,
        settings: Sequence[str],
        needs: tuple[Path, ...] = (),
    ) -> None:
        command = [*launcher(self.nproc), f"recipes.{kind}", str(out_dir)]
        if section.config_file is not None:
            command += ["--config-file", str(section.config_file)]
        overrides = [*self.leading, *section.overrides, *settings]
        command += ["--config", *overrides, "--no-rich"]
        self.steps.append(RecipeStep(kind, out_dir, command, needs))


def check_heldout_prompts(eval_file: Path, train_files: Sequence[Path]) -> int:
    """The number of distinct instructions in ``eval_file``.

    :raises ValueError: If one of them is also an instruction of a training
        file, or a file cannot be read.
    """
    try:
        eval_prompts = {e.instruction for e in read_instructions(eval_file)}
        train_prompts: set[str] = set()
        for path in train_files:
            train_prompts.update(e.instruction for e in read_instructions(path))
    except (OSError, ValueError) as ex:
        raise ValueError(f"Cannot check the held-out prompts: {ex}") from None

    shared = sorted(eval_prompts & train_prompts)
    if shared:
        shown = "; ".join(repr(p) for p in shared[:3])
        raise ValueError(
            f"{len(shared)} instruction(s) of the held-out file {eval_file} are also training instructions ({shown}). Build the held-out file from the evaluation pool (`python -m speechmapper_plugin.data.instructions asr ... --pool eval`)."
        )

    return len(eval_prompts)


def check_inputs(config: RunsConfig, *, dry_run: bool, label: str) -> int | None:
    """The held-out prompts are unseen in training and every input exists;
    the number of held-out prompts (``None`` in a dry run whose instruction
    files do not exist yet).

    A dry run shows the plan before its data exists: missing inputs are
    listed on stderr, and the held-out check waits until its files exist.

    :raises ValueError: On a missing input (unless ``dry_run``) or a
        held-out prompt that is a training prompt.
    """
    instructions, train_instructions = config.heldout_files()
    num_prompts = None
    if all(p.is_file() for p in (instructions, *train_instructions)):
        num_prompts = check_heldout_prompts(instructions, train_instructions)

    missing = [
        f"{key}: {path}" for key, path in config.inputs().items() if not path.exists()
    ]
    if missing and not dry_run:
        raise ValueError(
            f"{len(missing)} input(s) do not exist: " + "; ".join(missing) + "."
        )
    if missing:
        print(
            f"[{label}] dry run: {len(missing)} input(s) do not exist yet (a real run stops on them): "
            + "; ".join(missing),
            file=sys.stderr,
        )
    if num_prompts is None and not dry_run:  # a path that is not a file
        num_prompts = check_heldout_prompts(instructions, train_instructions)

    return num_prompts


@dataclass
class StepProgress:
    failed: dict[Path, str] = field(default_factory=dict)
    """Step dir -> what went wrong (the log to read)."""

    blocked: list[Path] = field(default_factory=list)
    """Not run because a step they need failed."""


def is_finished(step: RecipeStep) -> bool:
    """Finished with this very command; a marker from another command is an error."""
    marker = step.out_dir / MARKER
    if not marker.is_file():
        return False

    recorded = json.loads(marker.read_text()).get("command")
    if recorded != step.command:
        raise ValueError(
            f"{step.out_dir} was finished by another command ({recorded}); the plan would now run {step.command}. Remove that directory or use another output directory."
        )
    return True


def subprocess_env() -> dict[str, str]:
    """The recipe processes import ``recipes`` from the tree this module is in
    (the checkout, or the installed package), whatever else is on their path;
    they run where the plan was started, so that the plan file's relative paths
    mean the same to them as to the input checks."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) if not path else f"{REPO}{os.pathsep}{path}"
    env.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
    return env


def run_steps(
    steps: Sequence[RecipeStep], out_dir: Path, *, label: str
) -> StepProgress:
    """Run ``steps`` in order; their output goes to ``out_dir/logs/``."""
    progress = StepProgress()
    log_dir = out_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)

    for step in steps:
        where = f"[{label}] {step.kind} {step.out_dir}"

        if any(n in progress.failed or n in progress.blocked for n in step.needs):
            progress.blocked.append(step.out_dir)
            print(f"{where}: not run (a step it needs failed)")
            continue

        if is_finished(step):
            print(f"{where}: finished earlier, skipped")
            continue

        log = log_dir / (
            str(step.out_dir.relative_to(out_dir)).replace("/", "__")
            + f".{step.kind}.log"
        )
        print(f"{where}: running (log: {log})")

        with log.open("w") as fp:
            fp.write(shlex.join(step.command) + "\n\n")
            fp.flush()
            done = subprocess.run(
                step.command,
                env=subprocess_env(),
                stdout=fp,
                stderr=subprocess.STDOUT,
            )

        if done.returncode != 0:
            progress.failed[step.out_dir] = f"exit code {done.returncode}; see {log}"
            print(f"{where}: FAILED (exit code {done.returncode}, see {log})")
            continue

        step.out_dir.mkdir(parents=True, exist_ok=True)
        (step.out_dir / MARKER).write_text(
            json.dumps({"kind": step.kind, "command": step.command}, indent=2) + "\n"
        )

    return progress


def flatten_numbers(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of nested dicts, by dotted key (booleans left out)."""
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_numbers(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def last_validation(run_dir: Path) -> dict[str, dict[str, float]]:
    """The last record of each ``metrics/valid*/*.jsonl`` of a training run."""
    records: dict[str, dict[str, float]] = {}
    for path in sorted(run_dir.glob("metrics/valid*/*.jsonl")) + sorted(
        run_dir.glob("metrics/valid*.jsonl")
    ):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if lines:
            name = str(path.relative_to(run_dir / "metrics").with_suffix(""))
            records[name] = flatten_numbers(json.loads(lines[-1]))
    return records


def outcome_record(run: TrainedRun, progress: StepProgress) -> dict[str, Any]:
    """Status (with the problem, if any), step directories, evaluation
    metrics and last validation figures of a sweep run or a grid cell."""
    status = "ok"
    problem = None
    for path in (run.stage1_dir, run.stage2_dir, run.eval_dir):
        if path in progress.failed:
            status, problem = "failed", f"{path}: {progress.failed[path]}"
            break
        if path in progress.blocked:
            status, problem = "not run", f"{path}: a step it needs failed"
            break

    record: dict[str, Any] = {
        "status": status,
        "stage1_dir": None if run.stage1_dir is None else str(run.stage1_dir),
        "stage2_dir": None if run.stage2_dir is None else str(run.stage2_dir),
        "eval_dir": str(run.eval_dir),
    }
    if problem is not None:
        record["problem"] = problem

    summary_path = run.eval_dir / SUMMARY_FILE
    if status == "ok" and summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        metrics = summary.get("metrics", {})
        record["metrics"] = flatten_numbers(
            metrics if isinstance(metrics, dict) else {}
        )
    record["validation"] = last_validation(run.model_dir)
    return record


def metric_names(
    records: Sequence[Mapping[str, Any]], metrics: Sequence[str]
) -> list[str]:
    """``metrics`` if given, else every metric some record has, in order."""
    if metrics:
        return list(metrics)
    names: dict[str, None] = {}
    for record in records:
        names.update(dict.fromkeys(record.get("metrics", {})))
    return list(names)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What a sweep or a grid runs, and how it reports the outcome."""

    summary: str
    """The line that sums the plan up (``4 runs``, ``... = 6 cells``)."""

    runs: Sequence[TrainedRun]
    """The sweep runs or grid cells: one record each in the results."""

    runs_key: str
    """The key of the records in ``OUT/<name>.json`` (``runs``, ``cells``)."""

    steps: Sequence[RecipeStep]

    table: Callable[[Sequence[Mapping[str, Any]]], str]
    """The Markdown table of the records."""


def run_plan_command(
    name: str,
    doc: str | None,
    argv: list[str] | None,
    load_config: Callable[[Path], ConfigT],
    make_plan: Callable[[ConfigT, Path], Plan],
) -> int:
    """``python -m recipes.<name> OUT_DIR --config-file FILE [--dry-run]``;
    ``--help`` describes it with the second paragraph of ``doc`` (the module
    docstring of the command).

    ``make_plan(config, out_dir)`` gives the plan of the loaded config once
    its inputs are checked. A dry run prints one shell-quoted command per
    step. A real run runs them and writes
    ``OUT/<name>.json`` (the held-out check and every run's record) and
    ``OUT/<name>.md`` (the table, also printed): 0 if every step succeeded, 1
    if some failed or were not run, 2 on a bad config, a missing input or a
    stale marker.
    """
    assert doc is not None
    parser = argparse.ArgumentParser(
        prog=f"python -m recipes.{name}", description=doc.split("\n\n")[1]
    )
    parser.add_argument(
        "out_dir", type=Path, help="where every run gets its own directory"
    )
    parser.add_argument(
        "--config-file", type=Path, required=True, help="the plan (a YAML file)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the recipe commands (ready to paste into a shell), run nothing; inputs may be missing",
    )
    args = parser.parse_args(argv)
    out_dir = args.out_dir.resolve()

    try:
        config = load_config(args.config_file)
        num_prompts = check_inputs(config, dry_run=args.dry_run, label=name)
        plan = make_plan(config, out_dir)
        if args.dry_run:
            for step in plan.steps:
                print(shlex.join(step.command))
            return 0

        instructions, train_instructions = config.heldout_files()
        print(
            f"[{name}] {plan.summary}, {len(plan.steps)} recipe steps; held-out file {instructions}: {num_prompts} prompts, none used in training."
        )
        progress = run_steps(plan.steps, out_dir, label=name)
    except ValueError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2

    records = [{**run.describe(), **outcome_record(run, progress)} for run in plan.runs]
    heldout = {
        "instructions": str(instructions),
        "num_prompts": num_prompts,
        "train_instructions": [str(p) for p in train_instructions],
    }
    results = {"heldout": heldout, plan.runs_key: records}
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    table = plan.table(records)
    table_path = out_dir / f"{name}.md"
    table_path.write_text(table)

    print(table)
    print(f"[{name}] wrote {json_path} and {table_path}")

    if progress.failed or progress.blocked:
        print(
            f"[{name}] {len(progress.failed)} step(s) failed, {len(progress.blocked)} not run; rerun to retry them.",
            file=sys.stderr,
        )
        return 1

    return 0
