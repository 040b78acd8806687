"""The SFM x adapter x LLM grid (``python -m recipes.grid``): the plan of
recipe runs, bad configs, and a 2 SFM x 3 adapter x 1 LLM grid on the tiny
corpus through the real recipes, rerun to show it resumes cell by cell."""

from __future__ import annotations

import copy
import json
import shlex
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from recipes.grid.config import load_grid_config
from recipes.grid.plan import Widths, feature_store, plan_cells, plan_steps
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.instructions import (
    SpeechRecord,
    build_asr_examples,
    write_instructions,
)
from tests.support.audio import has_espeak
from tests.support.cards import SessionCards
from tests.support.corpus import SpeechCorpus
from tests.support.recipes import REPO, recipe_env

RECORDS = [SpeechRecord(id=f"u{i}", transcript=f"The dog {i}.") for i in range(8)]

BLOCK = {"model_dim": 64, "output_dim": 64, "num_attn_heads": 4, "ffn_inner_dim": 128}

ADAPTERS: list[dict[str, Any]] = [
    {"name": "tiny", "family": "speechmapper", "arch": "tiny"},
    {
        "name": "tiny_nopos",
        "family": "speechmapper",
        "arch": "tiny",
        "config": {"use_position_encoding": False},
    },
    {
        "name": "one_block",
        "family": "speechmapper",
        "arch": "tiny",
        "config": {"blocks": [{**BLOCK, "num_layers": 2}]},
    },
]
"""Three projector architectures: the grid's adapter axis."""

E2E_ADAPTERS: list[dict[str, Any]] = [
    {"name": "tiny", "family": "speechmapper", "arch": "tiny"},
    {"name": "conv", "family": "speech_adapter", "arch": "conv_tiny"},
    {"name": "cif", "family": "speech_adapter", "arch": "cif_tiny"},
]
"""The end-to-end grid's adapter axis: the SpeechMapper projector, a
fixed-rate and a variable-length adapter of Verdini et al., all evaluated."""


@pytest.fixture
def prompt_files(tmp_path: Path) -> dict[str, Path]:
    files = {"train": tmp_path / "train.jsonl", "eval": tmp_path / "eval.jsonl"}
    write_instructions(files["train"], build_asr_examples(RECORDS[:6], pool="train"))
    write_instructions(files["eval"], build_asr_examples(RECORDS[6:], pool="eval"))
    return files


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _base(files: dict[str, Path], manifest: Path) -> dict[str, Any]:
    return {
        "sfms": [
            {"name": "sm4t", "card": "test_sm4t_hf"},
            {
                "name": "whisper",
                "card": "test_whisper_hf",
                "overrides": ["features.layer=2"],
            },
        ],
        "adapters": copy.deepcopy(ADAPTERS),
        "llms": [{"name": "llama", "card": "test_llama"}],
        "protocols": ["stage1"],
        "manifests": {"train": str(manifest)},
        "extract": {
            "config_file": str(REPO / "recipes/extract_features/configs/tiny.yaml")
        },
        "stage1": {"config_file": str(REPO / "recipes/stage1/configs/tiny.yaml")},
        "evaluate": {
            "config_file": str(REPO / "recipes/evaluate/configs/tiny.yaml"),
            "instructions": str(files["eval"]),
            "split": "train",
        },
    }


def test_grid_plan(prompt_files: dict[str, Path], tmp_path: Path) -> None:
    data = _base(prompt_files, tmp_path / "m.tsv")
    data["protocols"] = ["stage1_then_stage2"]
    data["manifests"]["dev"] = str(tmp_path / "dev.tsv")
    data["evaluate"]["split"] = "dev"
    data["stage2"] = {
        "config_file": str(REPO / "recipes/stage2/configs/tiny.yaml"),
        "instructions": {"train": [str(prompt_files["train"])]},
    }
    data["asset_paths"] = [str(tmp_path / "cards")]
    data["nproc"] = 2
    config = load_grid_config(_write(tmp_path / "g.yaml", data))
    out = tmp_path / "out"

    cells = plan_cells(config, out)
    assert [c.name for c in cells] == [
        f"{s}/{a['name']}/llama/stage1_then_stage2"
        for s in ("sm4t", "whisper")
        for a in ADAPTERS
    ]
    widths = Widths(
        sfm={"test_sm4t_hf": 64, "test_whisper_hf": 48}, llm={"test_llama": 32}
    )
    steps = plan_steps(config, cells, out, widths)

    kinds = [s.kind for s in steps]
    assert (
        kinds
        == ["extract_features"] * 4 + ["stage1"] * 6 + ["stage2"] * 6 + ["evaluate"] * 6
    )
    # Every recipe through torchrun, with the grid's card directory.
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    assert all(
        s.command[:5] == [torchrun, "--standalone", "--nproc-per-node", "2", "-m"]
        for s in steps
    )
    assert all(
        f"common.assets.extra_paths=[{tmp_path / 'cards'}]" in s.command for s in steps
    )

    whisper_dev = steps[3]
    assert whisper_dev.out_dir == out / "features/whisper/dev"
    assert "model.name=test_whisper_hf" in whisper_dev.command
    assert "features.layer=2" in whisper_dev.command
    assert (
        f"dataset.config_overrides={{manifests: {{dev: {tmp_path / 'dev.tsv'}}}}}"
        in whisper_dev.command
    )

    # A cell: the SFM's width in, the LLM's width out, the SFM's stores.
    stage1 = next(
        s for s in steps if s.kind == "stage1" and "whisper/one_block" in str(s.out_dir)
    )
    assert stage1.out_dir == out / "cells/whisper/one_block/llama/stage1"
    overrides = next(
        c for c in stage1.command if c.startswith("model.config_overrides=")
    )
    model_config = yaml.safe_load(overrides.split("=", 1)[1])
    assert model_config["input_dim"] == 48 and model_config["output_dim"] == 32
    assert model_config["blocks"][0]["num_layers"] == 2
    assert (
        f"dataset.config_overrides={{splits: {{train: [{feature_store(out, config.sfms[1], 'train')}], dev: [{feature_store(out, config.sfms[1], 'dev')}]}}}}"
        in stage1.command
    )
    assert set(stage1.needs) == {
        out / "features/whisper/train",
        out / "features/whisper/dev",
    }

    stage2 = next(
        s for s in steps if s.out_dir == out / "cells/whisper/one_block/llama/stage2"
    )
    assert (
        f"common.assets.prev_checkpoint_dir={stage1.out_dir / 'checkpoints'}"
        in stage2.command
    )
    assert stage2.needs == (stage1.out_dir,)

    evaluate = steps[-1]
    assert evaluate.out_dir == out / "cells/whisper/one_block/llama/stage2/eval"
    assert "sfm.name=test_whisper_hf" in evaluate.command
    assert (
        f"input.feature_store={feature_store(out, config.sfms[1], 'dev')}"
        in evaluate.command
    )
    assert f"input.instructions={prompt_files['eval']}" in evaluate.command


def test_protocols_share_stage1_and_train_fresh_models_in_stage2(
    prompt_files: dict[str, Path], tmp_path: Path
) -> None:
    """Three protocols per (SFM, adapter, LLM): stage 1 runs once for
    ``stage1`` and ``stage1_then_stage2``; ``stage2_only`` trains the cell's
    architecture from scratch in the stage-2 recipe, CE only by default."""
    data = _base(prompt_files, tmp_path / "m.tsv")
    data["sfms"] = data["sfms"][1:]
    # What follows from this SFM's features, in every cell of it.
    data["sfms"][0]["model_config"] = {"frame_averaging": 1}
    data["adapters"] = [ADAPTERS[0], E2E_ADAPTERS[1]]
    data["protocols"] = ["stage1", "stage1_then_stage2", "stage2_only"]
    data["stage2"] = {
        "config_file": str(REPO / "recipes/stage2/configs/tiny.yaml"),
        "instructions": {"train": [str(prompt_files["train"])]},
        "overrides": ["regime.num_steps=7"],
    }
    data["stage2_only"] = {"overrides": ["optimizer.config.lr=0.01"]}
    config = load_grid_config(_write(tmp_path / "g.yaml", data))
    out = tmp_path / "out"
    cells = plan_cells(config, out)
    widths = Widths(sfm={"test_whisper_hf": 48}, llm={"test_llama": 32})
    steps = plan_steps(config, cells, out, widths)

    assert [(c.adapter.name, c.protocol) for c in cells] == [
        (a, p)
        for a in ("tiny", "conv")
        for p in ("stage1", "stage1_then_stage2", "stage2_only")
    ]
    conv = out / "cells/whisper/conv/llama"
    by_dir = {s.out_dir: s for s in steps}
    assert len(by_dir) == len(steps)  # no run twice
    assert [s.kind for s in steps] == (
        ["extract_features"] + ["stage1"] * 2 + ["stage2"] * 4 + ["evaluate"] * 6
    )
    assert [c.eval_dir for c in cells[3:]] == [
        conv / "stage1/eval",
        conv / "stage2/eval",
        conv / "stage2_only/eval",
    ]
    assert cells[5].stage1_dir is None

    fresh = by_dir[conv / "stage2_only"].command
    assert "model.name=null" in fresh
    assert "model.family=speech_adapter" in fresh and "model.arch=conv_tiny" in fresh
    overrides = next(c for c in fresh if c.startswith("model.config_overrides="))
    assert yaml.safe_load(overrides.split("=", 1)[1]) == {
        "frame_averaging": 1,
        "input_dim": 48,
        "output_dim": 32,
    }
    assert "loss.sigma=0.0" in fresh
    assert not any("prev_checkpoint_dir" in c for c in fresh)
    # The stage-2 config and overrides, then the section's own.
    assert fresh[fresh.index("--config-file") + 1] == data["stage2"]["config_file"]
    assert fresh.index("regime.num_steps=7") < fresh.index("optimizer.config.lr=0.01")
    assert by_dir[conv / "stage2_only"].needs == (out / "features/whisper/train",)
    assert "optimizer.config.lr=0.01" not in by_dir[conv / "stage2"].command
    evaluate = by_dir[conv / "stage2_only/eval"]
    assert (
        f"common.assets.prev_checkpoint_dir={conv / 'stage2_only/checkpoints'}"
        in evaluate.command
    )
    assert evaluate.needs == (conv / "stage2_only",)


def test_the_table_has_a_protocol_column_when_the_grid_compares_several() -> None:
    from recipes.grid.__main__ import format_tables

    def record(adapter: str, protocol: str, wer: float) -> dict[str, Any]:
        return {
            "sfm": "sm4t",
            "llm": "llama",
            "adapter": adapter,
            "protocol": protocol,
            "status": "ok",
            "metrics": {"asr.wer": wer},
        }

    both = format_tables(
        [record("conv", "stage1", 0.5), record("conv", "stage2_only", 0.25)],
        ["asr.wer"],
    )
    assert "| adapter | protocol | sm4t + llama |" in both
    assert "| conv | stage1 | 0.5 |" in both and "| conv | stage2_only | 0.25 |" in both
    one = format_tables([record("conv", "stage1", 0.5)], ["asr.wer"])
    assert "| adapter | sm4t + llama |" in one and "| conv | 0.5 |" in one


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(sfms=[]), "`sfms` must list"),
        (lambda d: d["adapters"].append(dict(ADAPTERS[0])), "duplicate names"),
        (lambda d: d["llms"][0].update(name="a/b"), "names a directory"),
        (lambda d: d.update(protocols=["stage3"]), "malformed"),
        (lambda d: d.update(protocols=["stage1", "stage1"]), "duplicates"),
        (lambda d: d.update(protocols=["stage2_only"]), "`stage2.config_file`"),
        (lambda d: d.update(stages=["stage1"]), "`protocols: \\[stage1\\]`"),
        (
            lambda d: d.update(stage2_only={"overrides": ["loss.sigma=0.5"]}),
            "which the sweep sets",
        ),
        (lambda d: d.update(stage2_only={"sigma": 2.0}), "`sigma` must be"),
        (
            lambda d: d["sfms"][0].update(model_config={"input_dim": 3}),
            "sets `input_dim` in its `model_config`",
        ),
        (lambda d: d["adapters"][0].update(config=[1]), "not a mapping"),
        (lambda d: d["evaluate"].update(split="dev"), "`evaluate.split`"),
        (
            lambda d: d["stage1"].update(overrides=["model.arch=x"]),
            "which the sweep sets",
        ),
        (lambda d: d.update(bogus=1), "malformed"),
    ],
)
def test_bad_grid_configs_are_refused(
    prompt_files: dict[str, Path], tmp_path: Path, change: Any, message: str
) -> None:
    data = _base(prompt_files, tmp_path / "m.tsv")
    change(data)
    with pytest.raises(ValueError, match=message):
        load_grid_config(_write(tmp_path / "g.yaml", data))


GRID_IN_ONE_PROCESS = """
import subprocess, sys, types
import recipes.runs
from recipes.grid.__main__ import main
from tests.support.in_process import in_process_run
recipes.runs.subprocess = types.SimpleNamespace(run=in_process_run, STDOUT=subprocess.STDOUT)
sys.exit(main(sys.argv[1:]))
"""
"""``python -m recipes.grid`` with every recipe step run in the grid's own
process: torch and fairseq2 imported once, not once per step (a tiny step is
~1 s of work after ~10 s of imports on the test machine)."""


def _grid(out: Path, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-c",
            GRID_IN_ONE_PROCESS,
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


def _grid_here(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    out: Path,
    config: Path,
    *args: str,
) -> subprocess.CompletedProcess[str]:
    """:func:`_grid` in this process, for a grid that stops before any recipe
    step (a dry run, refused inputs): no process to start. The session's
    fairseq2 already holds the test cards (the configs' ``asset_paths``), so
    the grid does not start its own."""
    import recipes.grid.__main__ as grid_main

    monkeypatch.setattr(grid_main, "start_fairseq2", lambda asset_paths: None)
    argv = [str(out), "--config-file", str(config), *args]
    capsys.readouterr()
    try:
        code = grid_main.main(argv)
    except SystemExit as ex:
        code = ex.code if isinstance(ex.code, int) else 1
    stdout, stderr = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, stdout, stderr)


def test_cli_refuses_unknown_cards_and_leaked_prompts(
    prompt_files: dict[str, Path],
    tmp_path: Path,
    test_cards: SessionCards,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    grid = partial(_grid_here, monkeypatch, capsys)
    data = _base(prompt_files, tmp_path / "m.tsv")
    data["asset_paths"] = [str(test_cards.card_dir)]
    data["sfms"][0]["card"] = "no_such_card"
    done = grid(tmp_path / "out", _write(tmp_path / "g.yaml", data), "--dry-run")
    assert done.returncode == 2 and "no asset card named 'no_such_card'" in done.stderr

    data = _base(prompt_files, tmp_path / "m.tsv")
    data["protocols"] = ["stage1_then_stage2"]
    data["stage2"] = {
        "config_file": str(REPO / "recipes/stage2/configs/tiny.yaml"),
        "instructions": {"train": [str(prompt_files["eval"])]},
    }
    done = grid(tmp_path / "out", _write(tmp_path / "g.yaml", data), "--dry-run")
    assert done.returncode == 2 and "also training instructions" in done.stderr
    assert not (tmp_path / "out").exists()


def test_dry_run_shows_the_plan_before_its_data_exists(
    tmp_path: Path,
    test_cards: SessionCards,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """No manifest or instruction file exists yet: the dry run lists them and
    prints the plan; a real run stops on them, running nothing."""
    from recipes.grid.plan import read_widths

    absent = tmp_path / "not yet"
    files = {"train": absent / "train.jsonl", "eval": absent / "eval.jsonl"}
    data = _base(files, absent / "m.tsv")
    data["asset_paths"] = [str(test_cards.card_dir)]
    data["protocols"] = ["stage1_then_stage2"]
    data["stage2"] = {
        "config_file": str(REPO / "recipes/stage2/configs/tiny.yaml"),
        "instructions": {"train": [str(files["train"])]},
    }
    config = _write(tmp_path / "g.yaml", data)
    out = tmp_path / "grid out"

    done = _grid_here(monkeypatch, capsys, out, config, "--dry-run")
    assert done.returncode == 0, done.stderr
    for key in (
        "manifests.train",
        "stage2.instructions.train[0]",
        "evaluate.instructions",
    ):
        assert f"{key}: {absent}" in done.stderr
    assert not out.exists()

    # Each printed line is a shell command for the argv the grid would run.
    loaded = load_grid_config(config)
    cells = plan_cells(loaded, out.resolve())
    steps = plan_steps(loaded, cells, out.resolve(), read_widths(loaded))
    printed = [shlex.split(line) for line in done.stdout.splitlines()]
    assert printed == [step.command for step in steps]
    assert len(printed) == 2 + 6 + 6 + 6
    assert any(" " in arg and "{" in arg for arg in printed[0])

    done = _grid_here(monkeypatch, capsys, out, config)
    assert done.returncode == 2
    assert "3 input(s) do not exist" in done.stderr
    assert not out.exists()


def test_help_says_what_the_grid_does(capsys: pytest.CaptureFixture[str]) -> None:
    from recipes.grid.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "Runs the SFM x adapter x LLM grid" in capsys.readouterr().out


@pytest.fixture(scope="module")
def heldout(
    tmp_path_factory: pytest.TempPathFactory, speech_corpus: SpeechCorpus
) -> Path:
    store = FeatureStore(speech_corpus.features)
    records = {
        e.id: SpeechRecord(id=e.id, transcript=e.transcript, lang=e.lang)
        for e in store.entries
    }
    path = tmp_path_factory.mktemp("grid_heldout") / "eval.jsonl"
    write_instructions(
        path,
        build_asr_examples(
            (records[i] for i in speech_corpus.held_out_ids), pool="eval"
        ),
    )
    return path


SHORT_STEPS = 2

SHORT_TRAINING = (
    f"regime.num_steps={SHORT_STEPS}",
    "regime.validate_at_start=false",
    f"regime.validate_every_n_steps={SHORT_STEPS}",
    f"regime.checkpoint_every_n_steps={SHORT_STEPS}",
    f"regime.publish_metrics_every_n_steps={SHORT_STEPS}",
    "lr_scheduler.config.num_warmup_steps=1",
)
"""Each cell's training: a checkpoint and a validation at the last step,
nothing more (each recipe process mostly imports; its steps are what we can
cut)."""


SFM_RECORDS = {
    "sm4t": ("test_sm4t_hf", "sm4t_speech_encoder"),
    "whisper": ("test_whisper_hf", "whisper_encoder"),
}


@pytest.mark.slow
@pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox")
def test_two_sfm_three_adapter_grid_end_to_end(
    tmp_path: Path,
    speech_corpus: SpeechCorpus,
    heldout: Path,
    test_cards: SessionCards,
) -> None:
    data = _base({"eval": heldout}, speech_corpus.manifest)
    data["adapters"] = copy.deepcopy(E2E_ADAPTERS)
    data["asset_paths"] = [str(test_cards.card_dir)]
    data["stage1"]["overrides"] = list(SHORT_TRAINING)
    data["evaluate"]["metrics"] = ["asr.wer", "asr.cer"]
    data["evaluate"]["overrides"] = ["generation.max_new_tokens=8"]
    config = _write(tmp_path / "grid.yaml", data)
    out = tmp_path / "grid"

    done = _grid(out, config)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    table = json.loads((out / "grid.json").read_text())
    cells = table["cells"]
    assert [(c["sfm"], c["adapter"], c["llm"], c["status"]) for c in cells] == [
        (s, a["name"], "llama", "ok") for s in ("sm4t", "whisper") for a in E2E_ADAPTERS
    ]
    architectures = {a["name"]: (a["family"], a["arch"]) for a in E2E_ADAPTERS}
    for cell in cells:
        # Each cell trained on its own SFM's features, with its own architecture.
        used = yaml.safe_load((Path(cell["stage1_dir"]) / "config.yaml").read_text())
        store = Path(used["dataset"]["config_overrides"]["splits"]["train"][0])
        assert used["model"]["config_overrides"]["input_dim"] == 64
        assert (used["model"]["family"], used["model"]["arch"]) == architectures[
            cell["adapter"]
        ]
        meta = FeatureStore(store).metadata
        assert (meta.encoder, meta.encoder_family) == SFM_RECORDS[cell["sfm"]]
        # The table holds the cell's own evaluation figures.
        summary = json.loads((Path(cell["eval_dir"]) / "summary.json").read_text())
        assert cell["metrics"]["asr.wer"] == summary["metrics"]["asr"]["wer"]
        assert summary["metrics"]["asr"]["num_examples"] > 0
        assert cell["validation"]["valid/train"]["Step"] == SHORT_STEPS

    md = (out / "grid.md").read_text()
    assert "| adapter | sm4t + llama | whisper + llama |" in md
    assert "### asr.wer" in md and "### asr.cer" in md
    assert md in done.stdout
    # Extraction ran once per SFM, not per cell.
    assert (
        sum(
            "extract_features" in line and "running" in line
            for line in done.stdout.splitlines()
        )
        == 2
    )

    # Resumable cell by cell: a rerun skips every finished step.
    summary_file = Path(cells[0]["eval_dir"]) / "summary.json"
    before = summary_file.stat().st_mtime_ns
    again = _grid(out, config)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("finished earlier, skipped") == 2 + 6 + 6
    assert summary_file.stat().st_mtime_ns == before
    assert json.loads((out / "grid.json").read_text()) == table


def test_the_shipped_example_validates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    config = load_grid_config(REPO / "recipes/grid/examples/verdini_asr.yaml")
    assert [s.card for s in config.sfms] == [
        "seamless_m4t_v2_large_speech_encoder",
        "whisper_large_v3_encoder",
        "seamless_m4t_v2_large_speech_encoder_adaptor",
    ]
    assert config.sfms[-1].model_config == {"frame_averaging": 1}
    assert len(config.adapters) == 8
    assert config.adapters[-1].config == {"ctc_merge": "average"}
    assert config.protocols == ["stage1_then_stage2", "stage2_only"]


ADAPTOR_SFM: dict[str, Any] = {
    "name": "sm4t_adaptor",
    "card": "test_sm4t_hf_adaptor",
    # SeamlessM4T's length adaptor already gives 6.25 Hz: no 2:1 averaging.
    "overrides": ["features.frame_averaging=1"],
    "model_config": {"frame_averaging": 1},
}
"""SeamlessM4T's adaptor output (the tiny file read through ``tiny_adaptor``)."""


@pytest.mark.slow
@pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox")
def test_both_protocols_on_the_sm4t_adaptor_output(
    tmp_path: Path,
    speech_corpus: SpeechCorpus,
    heldout: Path,
    test_cards: SessionCards,
) -> None:
    """A ``base`` adapter on SeamlessM4T's adaptor output (6.25 Hz, no 2:1
    averaging) trained both ways: stage 1 then stage 2 from its checkpoints,
    and a fresh adapter by stage 2 alone (CE only); both evaluated, one table
    row per protocol. (Whisper and SeamlessM4T's last layer go through stage 1
    and evaluation in the end-to-end grid above; stage 2 reads any store alike.)"""
    store = FeatureStore(speech_corpus.features)
    records = {
        e.id: SpeechRecord(id=e.id, transcript=e.transcript, lang=e.lang)
        for e in store.entries
    }
    train = tmp_path / "train.jsonl"
    write_instructions(
        train,
        build_asr_examples((records[i] for i in speech_corpus.train_ids), pool="train"),
    )

    data = _base({"eval": heldout}, speech_corpus.manifest)
    data["sfms"] = [ADAPTOR_SFM]
    data["adapters"] = [
        {"name": "base", "family": "speech_adapter", "arch": "base_tiny"}
    ]
    data["asset_paths"] = [str(test_cards.card_dir)]
    data["protocols"] = ["stage1_then_stage2", "stage2_only"]
    short = list(SHORT_TRAINING)
    data["stage1"]["overrides"] = short
    data["stage2"] = {
        "config_file": str(REPO / "recipes/stage2/configs/tiny.yaml"),
        "instructions": {"train": [str(train)], "dev": [str(heldout)]},
        "overrides": short,
    }
    data["evaluate"]["overrides"] = ["generation.max_new_tokens=8"]
    out = tmp_path / "grid"

    done = _grid(out, _write(tmp_path / "grid.yaml", data))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    cells = json.loads((out / "grid.json").read_text())["cells"]
    assert [(c["sfm"], c["protocol"], c["status"]) for c in cells] == [
        ("sm4t_adaptor", "stage1_then_stage2", "ok"),
        ("sm4t_adaptor", "stage2_only", "ok"),
    ]
    (sfm,) = load_grid_config(tmp_path / "grid.yaml").sfms
    stores = [str(feature_store(out, sfm, "train"))]
    meta = FeatureStore(Path(stores[0])).metadata
    assert (meta.encoder, meta.frame_averaging) == ("test_sm4t_hf_adaptor", 1)
    for cell in cells:
        used = yaml.safe_load((Path(cell["stage2_dir"]) / "config.yaml").read_text())
        assert used["dataset"]["config_overrides"]["feature_stores"] == stores
        if cell["protocol"] == "stage1_then_stage2":
            assert cell["eval_dir"].endswith("stage2/eval")
            assert used["model"]["name"] == "last_checkpoint"
            used = yaml.safe_load(
                (Path(cell["stage1_dir"]) / "config.yaml").read_text()
            )
        else:
            # The fresh run: the cell's architecture built by the stage-2
            # recipe, no stage-1 checkpoint, CE alone.
            assert cell["eval_dir"].endswith("stage2_only/eval")
            assert cell["stage1_dir"] is None
            assert used["model"]["name"] is None
            assert used["loss"]["sigma"] == 0.0
            assert used["common"]["assets"]["prev_checkpoint_dir"] is None
            card = yaml.safe_load(
                (Path(cell["stage2_dir"]) / "checkpoints/model.yaml").read_text()
            )
            assert card["model_config"]["target_llm"] == "test_llama"
        model = used["model"]
        assert (model["family"], model["arch"]) == ("speech_adapter", "base_tiny")
        assert model["config_overrides"]["frame_averaging"] == 1
        assert cell["validation"]["valid/dev"]["Step"] == SHORT_STEPS
        assert "asr.wer" in cell["metrics"]

    md = (out / "grid.md").read_text()
    assert "| adapter | protocol | sm4t_adaptor + llama |" in md
    assert "| base | stage1_then_stage2 |" in md and "| base | stage2_only |" in md
