"""σ/α sweeps: the plan of recipe runs, held-out prompts, resumption, and a
two-σ sweep on the tiny corpus through the real recipes."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from recipes.runs import MARKER, check_heldout_prompts, is_finished
from recipes.sweep.config import load_sweep_config
from recipes.sweep.plan import plan_runs, plan_steps
from speechmapper_plugin.data.instructions import (
    SpeechRecord,
    build_asr_examples,
    write_instructions,
)
from tests.support.audio import has_espeak
from tests.support.cards import SessionCards
from tests.support.corpus import SpeechCorpus
from tests.support.recipes import REPO, read_metrics, recipe_env

RECORDS = [SpeechRecord(id=f"u{i}", transcript=f"The dog {i}.") for i in range(8)]


@pytest.fixture
def prompt_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "train": tmp_path / "train.jsonl",
        "eval": tmp_path / "eval.jsonl",
    }
    write_instructions(files["train"], build_asr_examples(RECORDS[:6], pool="train"))
    write_instructions(files["eval"], build_asr_examples(RECORDS[6:], pool="eval"))
    return files


def _write_config(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _base(files: dict[str, Path], tmp_path: Path) -> dict[str, Any]:
    return {
        "sigmas": [0.5, 0.9],
        "stage2": {
            "config_file": "recipes/stage2/configs/tiny.yaml",
            "overrides": ["llm.name=test_llama"],
            "prev_checkpoint_dir": str(tmp_path / "stage1/checkpoints"),
        },
        "evaluate": {
            "config_file": "recipes/generate/configs/tiny.yaml",
            "instructions": str(files["eval"]),
        },
        "train_instructions": [str(files["train"])],
    }


@pytest.fixture
def in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def test_sigma_sweep_plan(
    prompt_files: dict[str, Path], tmp_path: Path, in_repo: None
) -> None:
    config = load_sweep_config(
        _write_config(tmp_path / "s.yaml", _base(prompt_files, tmp_path))
    )
    out = tmp_path / "out"
    runs = plan_runs(config, out)

    assert [r.name for r in runs] == ["sigma_0.5", "sigma_0.9"]
    assert [r.eval_dir for r in runs] == [
        out / "sigma_0.5/eval",
        out / "sigma_0.9/eval",
    ]

    steps = plan_steps(config, runs)
    assert [(s.kind, s.out_dir) for s in steps] == [
        ("stage2", out / "sigma_0.5"),
        ("stage2", out / "sigma_0.9"),
        ("evaluate", out / "sigma_0.5/eval"),
        ("evaluate", out / "sigma_0.9/eval"),
    ]
    stage2 = steps[0].command
    assert stage2[:4] == [
        sys.executable,
        "-m",
        "recipes.stage2",
        str(out / "sigma_0.5"),
    ]
    assert "loss.sigma=0.5" in stage2
    assert (
        f"common.assets.prev_checkpoint_dir={tmp_path / 'stage1/checkpoints'}" in stage2
    )
    assert "llm.name=test_llama" in stage2

    evaluate = steps[3].command
    assert evaluate[2] == "recipes.evaluate"
    assert f"input.instructions={prompt_files['eval']}" in evaluate
    assert (
        f"common.assets.prev_checkpoint_dir={out / 'sigma_0.9/checkpoints'}" in evaluate
    )


def test_alpha_and_sigma_sweep_plan(
    prompt_files: dict[str, Path], tmp_path: Path, in_repo: None
) -> None:
    data = _base(prompt_files, tmp_path)
    data["alphas"] = [5, 9]
    data["stage1"] = {"config_file": "recipes/stage1/configs/tiny.yaml"}
    del data["stage2"]["prev_checkpoint_dir"]
    config = load_sweep_config(_write_config(tmp_path / "s.yaml", data))
    out = tmp_path / "out"

    runs = plan_runs(config, out)
    assert [r.name for r in runs] == [
        "alpha_5/sigma_0.5",
        "alpha_5/sigma_0.9",
        "alpha_9/sigma_0.5",
        "alpha_9/sigma_0.9",
    ]

    steps = plan_steps(config, runs)
    kinds = [s.kind for s in steps]
    assert kinds == ["stage1"] * 2 + ["stage2"] * 4 + ["evaluate"] * 4
    assert "loss.alpha=5.0" in steps[0].command
    stage2 = steps[2].command  # alpha 5, sigma 0.5
    assert "loss.alpha=5.0" in stage2 and "loss.sigma=0.5" in stage2
    assert f"common.assets.prev_checkpoint_dir={out / 'alpha_5/checkpoints'}" in stage2
    assert steps[2].needs == (out / "alpha_5",)

    # α only: the stage-1 runs themselves are evaluated.
    data["sigmas"] = []
    config = load_sweep_config(_write_config(tmp_path / "a.yaml", data))
    runs = plan_runs(config, out)
    assert [(r.name, r.eval_dir) for r in runs] == [
        ("alpha_5", out / "alpha_5/eval"),
        ("alpha_9", out / "alpha_9/eval"),
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(sigmas=[]), "Give `sigmas`"),
        (lambda d: d.update(sigmas=[0.5, 1.5]), "sigmas"),
        (lambda d: d.update(sigmas=[0.5, 0.5]), "duplicates"),
        (lambda d: d.update(train_instructions=[]), "train_instructions"),
        (lambda d: d["stage2"].pop("prev_checkpoint_dir"), "prev_checkpoint_dir"),
        (
            lambda d: d["stage2"]["overrides"].append("loss.sigma=0.1"),
            "which the sweep sets",
        ),
        (
            lambda d: d["evaluate"].update(overrides=["input.instructions=x"]),
            "which the sweep sets",
        ),
        (lambda d: d["evaluate"].update(config_file="nope.yaml"), "does not exist"),
        (lambda d: d.update(unknown_key=1), "malformed"),
    ],
)
def test_bad_sweep_configs_are_refused(
    prompt_files: dict[str, Path],
    tmp_path: Path,
    in_repo: None,
    change: Any,
    message: str,
) -> None:
    data = _base(prompt_files, tmp_path)
    change(data)
    with pytest.raises(ValueError, match=message):
        load_sweep_config(_write_config(tmp_path / "bad.yaml", data))


def test_heldout_prompts_must_not_be_training_prompts(
    prompt_files: dict[str, Path], tmp_path: Path
) -> None:
    assert check_heldout_prompts(prompt_files["eval"], [prompt_files["train"]]) >= 1

    leaked = tmp_path / "leaked.jsonl"
    write_instructions(leaked, build_asr_examples(RECORDS[6:], pool="train"))
    with pytest.raises(ValueError, match="also training instructions"):
        check_heldout_prompts(leaked, [prompt_files["train"]])

    with pytest.raises(ValueError, match="Cannot check"):
        check_heldout_prompts(tmp_path / "absent.jsonl", [prompt_files["train"]])


def test_a_run_finished_by_another_command_is_an_error(
    prompt_files: dict[str, Path], tmp_path: Path, in_repo: None
) -> None:
    config = load_sweep_config(
        _write_config(tmp_path / "s.yaml", _base(prompt_files, tmp_path))
    )
    step = plan_steps(config, plan_runs(config, tmp_path / "out"))[0]
    assert not is_finished(step)

    step.out_dir.mkdir(parents=True)
    (step.out_dir / MARKER).write_text(json.dumps({"command": step.command}))
    assert is_finished(step)

    (step.out_dir / MARKER).write_text(json.dumps({"command": ["other"]}))
    with pytest.raises(ValueError, match="finished by another command"):
        is_finished(step)


def test_cli_dry_run_and_errors(prompt_files: dict[str, Path], tmp_path: Path) -> None:
    config = _write_config(tmp_path / "s.yaml", _base(prompt_files, tmp_path))
    config_text = config.read_text().replace("recipes/", f"{REPO}/recipes/")
    config.write_text(config_text)

    done = _sweep(tmp_path / "out", config, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.splitlines()) == 4
    assert not (tmp_path / "out").exists()

    data = yaml.safe_load(config_text)
    data["evaluate"]["instructions"] = str(prompt_files["train"])
    leaked = _write_config(tmp_path / "leaked.yaml", data)
    done = _sweep(tmp_path / "out", leaked)
    assert done.returncode == 2
    assert "also training instructions" in done.stderr


def test_dry_run_shows_the_plan_before_its_data_exists(tmp_path: Path) -> None:
    """No instruction file, feature store or checkpoint exists yet: the dry run
    lists them and prints the plan; a real run stops on them, running nothing."""
    absent = tmp_path / "not yet"
    data = _base(
        {"eval": absent / "eval.jsonl", "train": absent / "train.jsonl"}, absent
    )
    data["stage2"]["config_file"] = str(REPO / data["stage2"]["config_file"])
    data["evaluate"]["config_file"] = str(REPO / data["evaluate"]["config_file"])
    data["evaluate"]["feature_store"] = str(absent / "features")
    data["stage2"]["overrides"].append(
        f"dataset.config_overrides={{splits: {{train: [{absent / 'train.jsonl'}]}}}}"
    )
    config = _write_config(tmp_path / "s.yaml", data)
    out = tmp_path / "sweep out"

    done = _sweep(out, config, "--dry-run")
    assert done.returncode == 0, done.stderr
    for key in (
        "train_instructions[0]",
        "evaluate.instructions",
        "evaluate.feature_store",
        "stage2.prev_checkpoint_dir",
    ):
        assert f"{key}: {absent}" in done.stderr
    assert not out.exists()

    # Each printed line is a shell command for the argv the sweep would run.
    loaded = load_sweep_config(config)
    steps = plan_steps(loaded, plan_runs(loaded, out.resolve()))
    printed = [shlex.split(line) for line in done.stdout.splitlines()]
    assert printed == [step.command for step in steps]
    assert len(printed) == 4
    assert any(" " in arg and "{" in arg for arg in printed[0])

    done = _sweep(out, config)
    assert done.returncode == 2
    assert "4 input(s) do not exist" in done.stderr
    assert not out.exists()


def test_help_says_what_the_sweep_does(capsys: pytest.CaptureFixture[str]) -> None:
    from recipes.sweep.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "Runs stage 2 for each σ" in capsys.readouterr().out


def _sweep(out: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "recipes.sweep",
            str(out),
            "--config-file",
            str(config),
            *args,
        ],
        cwd=REPO,
        env=recipe_env(),
        capture_output=True,
        text=True,
        timeout=1200,
    )


@pytest.fixture(scope="module")
def sweep_instructions(
    tmp_path_factory: pytest.TempPathFactory, speech_corpus: SpeechCorpus
) -> dict[str, Path]:
    from speechmapper_plugin.data.feature_store import FeatureStore

    store = FeatureStore(speech_corpus.features)
    records = {
        e.id: SpeechRecord(id=e.id, transcript=e.transcript, lang=e.lang)
        for e in store.entries
    }
    root = tmp_path_factory.mktemp("sweep_instructions")
    files = {"train": root / "train.jsonl", "eval": root / "eval.jsonl"}
    write_instructions(
        files["train"],
        build_asr_examples((records[i] for i in speech_corpus.train_ids), pool="train"),
    )
    write_instructions(
        files["eval"],
        build_asr_examples(
            (records[i] for i in speech_corpus.held_out_ids), pool="eval"
        ),
    )
    return files


@pytest.mark.slow
@pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox")
def test_two_sigma_sweep_on_the_tiny_corpus(
    tmp_path: Path,
    speech_corpus: SpeechCorpus,
    stage1_run: Path,
    sweep_instructions: dict[str, Path],
    test_cards: SessionCards,
) -> None:
    cards = [f"common.assets.extra_paths=[{test_cards.card_dir}]"]
    splits = (
        f"dataset.config_overrides={{splits: {{train: [{sweep_instructions['train']}], "
        f"dev: [{sweep_instructions['eval']}]}}, feature_stores: [{speech_corpus.features}]}}"
    )
    data = {
        "sigmas": [0.5, 1.0],
        "stage2": {
            "config_file": str(REPO / "recipes/stage2/configs/tiny.yaml"),
            "overrides": [
                *cards,
                f"llm.name={test_cards.llms.llama_card}",
                splits,
                "regime.num_steps=20",
                "regime.validate_every_n_steps=10",
                "regime.checkpoint_every_n_steps=10",
                "lr_scheduler.config.num_warmup_steps=5",
            ],
            "prev_checkpoint_dir": str(stage1_run / "checkpoints"),
        },
        "evaluate": {
            "config_file": str(REPO / "recipes/evaluate/configs/tiny.yaml"),
            "instructions": str(sweep_instructions["eval"]),
            "feature_store": str(speech_corpus.features),
            "overrides": [
                *cards,
                "sfm.name=test_sm4t_hf",
                f"llm.name={test_cards.llms.llama_card}",
            ],
            "metrics": ["asr.wer", "asr.cer", "failures.empty_rate"],
        },
        "train_instructions": [str(sweep_instructions["train"])],
    }
    config = _write_config(tmp_path / "sweep.yaml", data)
    out = tmp_path / "sweep"

    done = _sweep(out, config)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    table = json.loads((out / "sweep.json").read_text())
    assert table["heldout"]["num_prompts"] >= 1
    runs = table["runs"]
    assert [(r["name"], r["sigma"], r["status"]) for r in runs] == [
        ("sigma_0.5", 0.5, "ok"),
        ("sigma_1", 1.0, "ok"),
    ]
    for run in runs:
        run_dir = Path(run["stage2_dir"])
        # Each run trained with its own σ, from the given stage-1 checkpoints.
        config_used = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config_used["loss"]["sigma"] == run["sigma"]
        # The table holds the run's own evaluation and validation figures.
        summary = json.loads((Path(run["eval_dir"]) / "summary.json").read_text())
        assert run["metrics"]["asr.wer"] == summary["metrics"]["asr"]["wer"]
        last = read_metrics(run_dir, "valid/dev")[-1]
        assert run["validation"]["valid/dev"]["Step"] == last["Step"] == 20

    md = (out / "sweep.md").read_text()
    assert "| sigma_0.5 | - | 0.5 |" in md
    assert (
        md.splitlines()[0]
        == "| run | α | σ | asr.wer | asr.cer | failures.empty_rate | status |"
    )
    assert md in done.stdout

    # Resumable: a rerun skips every finished run.
    summary_file = Path(runs[0]["eval_dir"]) / "summary.json"
    before = summary_file.stat().st_mtime_ns
    again = _sweep(out, config)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished earlier, skipped") == 4
    assert summary_file.stat().st_mtime_ns == before
    assert json.loads((out / "sweep.json").read_text()) == table


def test_the_shipped_example_validates(in_repo: None) -> None:
    config = load_sweep_config(REPO / "recipes/sweep/examples/sigma_llama3_1_8b.yaml")
    assert config.sigmas == [0.0, 0.5, 0.8, 0.9]
    assert config.alphas == []
