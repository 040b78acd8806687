"""The offline quickstart: its command line, output directory, step runner and
failure reports, and (slow) the whole chain as ``python -m`` runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from speechmapper_plugin.quickstart import SMALL_SIZE, QuickstartError, main
from speechmapper_plugin.quickstart.commands import Commands
from speechmapper_plugin.quickstart.corpus import draw_transcripts
from speechmapper_plugin.quickstart.layout import MARKER, prepare_out_dir
from speechmapper_plugin.quickstart.options import DEFAULT_SIZE, parse_options
from speechmapper_plugin.quickstart.steps import StepFailed, StepRunner
from speechmapper_plugin.tiny_assets import has_speech_synthesis
from tests.support.recipes import recipe_env

needs_espeak = pytest.mark.skipif(
    not has_speech_synthesis(), reason="needs espeak-ng and sox"
)


def test_options_default_small_and_overrides() -> None:
    default = parse_options([])
    assert default.out_dir == Path("quickstart_out")
    assert default.size == DEFAULT_SIZE

    small = parse_options(["out", "--small", "--stage2-steps", "40", "--seed", "3"])
    assert small.out_dir == Path("out")
    assert small.size.num_train == SMALL_SIZE.num_train
    assert small.size.stage2_steps == 40
    assert small.seed == 3


@pytest.mark.parametrize(
    "args, message",
    [
        (["--stage1-steps", "30"], "`stage1_steps` must be a multiple of 20"),
        (["--stage2-steps", "50"], "`stage2_steps` must be a multiple of 20"),
        (["--num-dev", "0"], "`num_dev` must be positive"),
    ],
)
def test_bad_options_are_refused_with_the_reason(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse_options(args)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_out_dir_is_created_replaced_or_refused(tmp_path: Path) -> None:
    layout, replaced = prepare_out_dir(tmp_path / "new" / "run")
    assert not replaced and (layout.root / MARKER).is_file()

    # An earlier quickstart run is replaced.
    (layout.root / "stage1").mkdir()
    (layout.root / "stage1" / "old.txt").write_text("old")
    layout, replaced = prepare_out_dir(layout.root)
    assert replaced
    assert sorted(p.name for p in layout.root.iterdir()) == [MARKER]

    # Anything else is left alone.
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(QuickstartError, match="not empty and was not made by"):
        prepare_out_dir(foreign)
    assert (foreign / "thesis.tex").read_text() == "precious"

    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(QuickstartError, match="is not a directory"):
        prepare_out_dir(file)


def test_transcripts_are_distinct_disjoint_and_known_to_the_tokenizer() -> None:
    text, splits = draw_transcripts(30, 10, seed=1)
    train, dev = splits["train"], splits["dev"]
    assert len(train) == 30 and len(dev) == 10
    assert len(set(train + dev)) == 40
    assert set(train + dev) <= set(text)
    assert draw_transcripts(30, 10, seed=1)[1] == splits


def test_step_runner_logs_commands_and_reports_failures(tmp_path: Path) -> None:
    lines: list[str] = []
    runner = StepRunner(
        logs=tmp_path / "logs",
        num_steps=3,
        env=recipe_env(),
        cwd=tmp_path,
        echo=lines.append,
    )

    record = runner.run("ok", "Saying hello", [sys.executable, "-c", "print('hello')"])
    assert record.log is not None
    log = record.log.read_text()
    assert log.startswith(f"$ cd {tmp_path} && {sys.executable} -c ")
    assert "hello" in log
    assert lines[0] == "[1/3] Saying hello ..."

    def tool(argv: list[str]) -> int:
        raise SystemExit(f"no such utterance: {argv[0]}")

    with pytest.raises(StepFailed) as info:
        runner.run_main("tool", "Running a tool", "some.module", tool, ["u7"])
    assert info.value.returncode == 1
    assert "no such utterance: u7" in info.value.log.read_text()

    failing = [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    with pytest.raises(StepFailed) as info:
        runner.run("bad", "Breaking", failing)
    message = str(info.value)
    assert "Breaking failed (exit code 3)" in message
    assert str(info.value.log) in message and "| boom" in message
    assert [r.name for r in runner.records] == ["ok"]


def test_missing_speech_synthesis_stops_before_anything_is_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    out = tmp_path / "out"
    assert main([str(out), "--small"]) == 1
    err = capsys.readouterr().err
    assert "espeak-ng and sox" in err and "install_system_packages.sh" in err
    assert not out.exists()


def test_foreign_out_dir_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert main([str(tmp_path), "--small"]) == 1
    assert "was not made by the quickstart" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@needs_espeak
def test_failed_step_names_its_log_and_exits_non_zero(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def broken_extraction(self: Commands, split: str) -> list[str]:
        return [
            sys.executable,
            "-c",
            f"import sys; print('no {split} features'); sys.exit(4)",
        ]

    monkeypatch.setattr(Commands, "extract_features", broken_extraction)

    out = tmp_path / "out"
    assert main([str(out), "--num-train", "2", "--num-dev", "1"]) == 1

    captured = capsys.readouterr()
    assert "[5/11] Extracting train speech features" in captured.out
    err = captured.err
    assert "The quickstart stopped: Extracting train speech features" in err
    assert "failed (exit code 4)" in err
    log = out / "logs" / "05_extract_train.log"
    assert str(log) in err and "| no train features" in err
    # The steps before it ran for real.
    assert (out / "cards" / "quickstart.yaml").is_file()
    assert (out / "corpus" / "train.validation.tsv").is_file()
    assert not (out / "summary.json").exists()


@pytest.mark.slow
@needs_espeak
def test_quickstart_runs_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "quickstart"
    done = subprocess.run(
        [sys.executable, "-m", "speechmapper_plugin.quickstart", str(out), "--small"],
        cwd=tmp_path,  # it finds the recipes itself
        env={**recipe_env(), "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert f"Everything is in {out}/" in done.stdout
    assert "[11/11] Generating transcripts of the held-out audio" in done.stdout

    summary = json.loads((out / "summary.json").read_text())
    size = SMALL_SIZE

    # Every utterance was synthesised, validated, extracted and trained on.
    assert summary["data"]["train"]["utterances"] == size.num_train
    assert summary["data"]["train"]["extracted"] == size.num_train
    assert summary["data"]["dev"]["extracted"] == size.num_dev
    assert summary["stage1"]["skipped"] == {"train": 0, "dev": 0}
    for split in ("train", "dev"):
        report = (out / "corpus" / f"{split}.validation.tsv").read_text()
        assert report.splitlines() == ["line\tid\treason\tdetail"]

    # Stage 1 learned the embedding space: the training utterances are
    # memorised, and held-out ones moved towards their transcripts.
    trends = {t["split"]: t for t in summary["stage1"]["validation"]}
    train, dev = trends["train"], trends["dev"]
    assert train["first_step"] == 0 and train["last_step"] == size.stage1_steps
    assert train["last"]["mse_word"] < train["first"]["mse_word"] / 5
    assert train["last"]["embedding_wer"] < 25.0 < train["first"]["embedding_wer"]
    assert dev["last"]["mse_word"] < dev["first"]["mse_word"]
    assert dev["last"]["cosine_word"] > dev["first"]["cosine_word"]

    # Stage 2 started from stage 1 and validated the held-out instructions.
    (stage2,) = summary["stage2"]["validation"]
    assert stage2["last_step"] == size.stage2_steps
    assert stage2["first"]["mse_word"] == pytest.approx(
        dev["last"]["mse_word"], rel=0.05
    )
    # ... and steered the frozen LLM towards the held-out responses.
    assert 0.0 < stage2["last"]["ce"] < stage2["first"]["ce"]
    assert list((out / "stage2" / "checkpoints").glob(f"step_{size.stage2_steps}"))

    # Generation: one hypothesis per held-out utterance, with its reference.
    generation = summary["generation"]
    records = [
        json.loads(line)
        for line in (out / "generate" / "hypotheses.jsonl").read_text().splitlines()
    ]
    manifest = (out / "corpus" / "dev.tsv").read_text().splitlines()[1:]
    assert [r["reference"] for r in records] == [row.split("\t")[3] for row in manifest]
    assert generation["num_generated"] == size.num_dev
    assert sum(generation["stop_reasons"].values()) == size.num_dev
    assert all(r["stop_reason"] in ("eos", "max_length", "repetition") for r in records)
    assert generation["wer"] is not None
    assert len(generation["shown"]) == size.num_shown

    # Every step left a log that starts with its command line.
    logs = sorted((out / "logs").iterdir())
    assert len(logs) == 9  # 11 steps, two of them in-process without a log
    assert all(log.read_text().startswith("$ cd ") for log in logs)
    assert "-m recipes.stage2" in (out / "logs" / "10_stage2.log").read_text()
