"""Exporting a projector as a self-contained directory and loading it back."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml
from fairseq2.models import load_model
from fairseq2.nn import BatchLayout

from speechmapper_plugin.export.__main__ import main as export_main
from speechmapper_plugin.export.projector import (
    ProjectorProvenance,
    SpeechEncoderProvenance,
    export_config,
    export_projector,
    read_export_summary,
)
from speechmapper_plugin.models.projector_base import (
    SpeechFeaturesConfig,
    WarmStartRecord,
)
from speechmapper_plugin.models.speechmapper import (
    SpeechMapperProjector,
    get_speechmapper_model_hub,
)
from tests.support.cards import SessionCards
from tests.support.recipes import run_with_installed_plugin

PROJECTOR_CARD = "test_projector_llama"  # tiny arch, target_llm test_llama
SFM = SpeechEncoderProvenance(
    card="test_sm4t_hf", layer=4, layer_norm=True, frame_averaging=2
)


def _projector() -> SpeechMapperProjector:
    model = load_model(PROJECTOR_CARD, device=torch.device("cpu"))
    assert isinstance(model, SpeechMapperProjector)
    return model.eval()


def _features(seed: int = 0) -> tuple[torch.Tensor, BatchLayout]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 120, 64, generator=generator)
    return features, BatchLayout.of(features, [120, 90])


@torch.no_grad()
def _outputs(model: torch.nn.Module) -> torch.Tensor:
    features, layout = _features()
    outputs, _ = model(features, layout, pre_averaged=True)
    return outputs


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "my_projector"
    export_projector(
        _projector(),
        out,
        name="my_exported_projector",
        provenance=ProjectorProvenance(
            sfm=SFM,
            pad_token="<|finetune_right_pad_id|>",
            stage="stage1",
            training={"num_steps": 60, "loss.alpha": 9.0},
            evaluation={"dev": {"embedding_wer": 12.5, "Step": 60}},
        ),
    )
    return out


def test_export_directory_is_self_contained(exported: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == [
        "README.md",
        "card.yaml",
        "config.json",
        "model.safetensors",
    ]

    card = yaml.safe_load((exported / "card.yaml").read_text())
    assert card["name"] == "my_exported_projector"
    assert card["model_family"] == "speechmapper"
    assert card["checkpoint"] == "model.safetensors"  # relative to the card
    assert card["model_config"]["target_llm"] == "test_llama"

    summary = json.loads((exported / "config.json").read_text())
    assert summary["speech_encoder"] == {
        "card": "test_sm4t_hf",
        "layer": 4,
        "layer_norm": True,
        "frame_averaging": 2,
    }
    assert summary["target_llm"] == {
        "card": "test_llama",
        "pad_token": "<|finetune_right_pad_id|>",
    }

    readme = (exported / "README.md").read_text()
    assert "`test_sm4t_hf`, layer 4" in readme and "`test_llama`" in readme
    assert "| dev | 60 | 12.5 |" in readme


def test_exported_files_are_readable_like_any_other(exported: Path) -> None:
    """Each file has the mode a plain ``open()`` gives in the same directory
    (the umask's), not a private 0600."""
    reference = exported.parent / "reference.txt"
    with open(reference, "w") as fp:
        fp.write("x")
    try:
        for path in exported.iterdir():
            assert path.stat().st_mode == reference.stat().st_mode, path.name
    finally:
        reference.unlink()


def test_weights_are_bit_identical(exported: Path) -> None:
    original = _projector().state_dict()
    saved = safetensors.torch.load_file(exported / "model.safetensors")

    assert saved.keys() == original.keys()
    for key, value in original.items():
        assert saved[key].dtype == value.dtype
        assert torch.equal(saved[key], value), key


def test_export_loads_back_with_identical_outputs(exported: Path) -> None:
    summary = read_export_summary(exported)
    config = export_config(summary)
    # The provenance's speech features are recorded in the exported config.
    features = SpeechFeaturesConfig(encoder="test_sm4t_hf", layer=4, layer_norm=True)
    assert config == replace(_projector().config, speech_features=features)

    loaded = get_speechmapper_model_hub().load_custom_model(
        exported / "model.safetensors", config, device=torch.device("cpu")
    )

    assert torch.equal(_outputs(loaded.eval()), _outputs(_projector()))


_FRESH_PROCESS = """
import sys, torch
from pathlib import Path
from fairseq2 import init_fairseq2
from fairseq2.composition import register_file_assets

export_dir, card_dir, out = map(Path, sys.argv[1:4])

def extras(container):
    register_file_assets(container, export_dir)
    register_file_assets(container, card_dir)

init_fairseq2(extras=extras)

from fairseq2.models import load_model
from fairseq2.nn import BatchLayout
from speechmapper_plugin.speech_llm import SpeechMapperPipeline

features = torch.load(out / "features.pt")
layout = BatchLayout.of(features, [120, 90])

model = load_model("my_exported_projector", device=torch.device("cpu")).eval()
pipeline = SpeechMapperPipeline.from_cards(
    "test_sm4t_hf", "my_exported_projector", "test_llama", device="cpu"
)
with torch.no_grad():
    a, _ = model(features, layout, pre_averaged=True)
    b, _ = pipeline.projector(features, layout, pre_averaged=True)
torch.save({"load_model": a, "pipeline": b}, out / "outputs.pt")
"""


def test_export_loads_in_a_fresh_process(
    exported: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    """Only the installed plugin and the two directories: no repository path."""
    features, _ = _features()
    torch.save(features, tmp_path / "features.pt")

    run_with_installed_plugin(
        _FRESH_PROCESS,
        str(exported),
        str(test_cards.card_dir),
        str(tmp_path),
        cwd=tmp_path,
    )

    outputs = torch.load(tmp_path / "outputs.pt")
    expected = _outputs(_projector())
    assert torch.equal(outputs["load_model"], expected)
    assert torch.equal(outputs["pipeline"], expected)


def test_export_config_reads_the_warm_start_record_back_typed(tmp_path: Path) -> None:
    """A retargeted projector's ``warm_started_from`` comes back from an
    export's ``config.json`` as the record it was written from."""
    model = _projector()
    record = WarmStartRecord(
        checkpoint="/runs/a/checkpoints/step_300/model/pp_00/tp_00/sdp_00.pt",
        step=300,
        target_llm="test_llama",
        num_loaded_tensors=40,
        fresh_tensors=["final_proj.weight", "final_proj.bias"],
        keep_fresh=[r"blocks\.1\."],
        freeze_loaded_steps=20,
    )
    model.config = replace(model.config, warm_started_from=record)
    out = tmp_path / "out"
    export_projector(model, out, name="retargeted")

    config = export_config(read_export_summary(out))

    assert config.warm_started_from == record


def test_export_refuses_a_projector_without_target_llm(tmp_path: Path) -> None:
    model = _projector()
    model.config = export_config(
        {"projector": {**_config_dict(model), "target_llm": None}}
    )

    with pytest.raises(ValueError, match="no target LLM"):
        export_projector(model, tmp_path / "out", name="x")


def test_export_refuses_a_non_empty_directory_and_a_bad_name(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")

    with pytest.raises(ValueError, match="not empty"):
        export_projector(_projector(), tmp_path / "out", name="x")
    with pytest.raises(ValueError, match="asset name"):
        export_projector(_projector(), tmp_path / "new", name="my projector")

    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_read_export_summary_rejects_other_directories(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')

    with pytest.raises(ValueError, match="not a SpeechMapper projector export"):
        read_export_summary(tmp_path)


def _config_dict(model: SpeechMapperProjector) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(model.config)


@pytest.mark.slow
def test_cli_exports_a_stage1_run(stage1_run: Path, tmp_path: Path) -> None:
    """The stage-1 run's last checkpoint, with what it was trained on."""
    from tests.support.corpus import STAGE1_STEPS
    from tests.support.recipes import recipe_env
    from tests.test_stage1_recipe import last_model_state

    out = tmp_path / "export"

    def export(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "speechmapper_plugin.export"]
            + [str(stage1_run), str(out), "--name", name],
            env=recipe_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )

    done = export("stage1_tiny")
    assert done.returncode == 0, done.stderr[-3000:]

    summary = read_export_summary(out)
    assert summary["stage"] == "stage1"
    assert summary["target_llm"]["card"] == "test_llama"
    assert summary["speech_encoder"]["card"] == "test_sm4t_hf"
    assert "embedding_wer" in summary["evaluation"]["train"]

    # The weights are the run's last checkpoint.
    saved = safetensors.torch.load_file(out / "model.safetensors")
    expected = last_model_state(stage1_run, STAGE1_STEPS)
    assert saved.keys() == expected.keys()
    assert all(torch.equal(saved[k], expected[k]) for k in saved)

    # An existing export is not overwritten without --overwrite.
    again = export("again")
    assert again.returncode == 1 and "not empty" in again.stderr


def test_cli_explains_a_directory_without_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        export_main([str(tmp_path), str(tmp_path / "out"), "--name", "x"])
