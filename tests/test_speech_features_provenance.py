"""The speech-encoder features a projector was trained on (encoder card,
layer, LayerNorm) travel with it: training records them, exports carry them,
and the pipeline and the generate/evaluate recipes use them by default and
refuse others unless told (issue 23, item 0).

Every test uses layer 2 of the session's 4-layer tiny SeamlessM4T-v2 encoder
(``test_sm4t_hf``) without its final LayerNorm: not the encoder's default
(layer 4, with it), so a forgotten record shows.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from fairseq2.data.tokenizers import load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.recipe.error import RecipeError

from recipes.common import record_speech_features
from speechmapper_plugin.audio import load_audio
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.instructions import (
    SpeechRecord,
    build_asr_examples,
    write_instructions,
)
from speechmapper_plugin.data.usability import feature_store_problem
from speechmapper_plugin.export.projector import (
    ProjectorProvenance,
    export_config,
    export_projector,
    read_export_summary,
)
from speechmapper_plugin.export.provenance import read_run_provenance
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.models.projector_base import SpeechFeaturesConfig
from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4TSpeechEncoder,
    SpeechFeatureExtractor,
)
from speechmapper_plugin.models.speechmapper import (
    SpeechMapperProjector,
    get_speechmapper_model_hub,
)
from speechmapper_plugin.speech_llm import (
    IncompatibleComponentsError,
    PipelineResult,
    SpeechMapperPipeline,
)
from speechmapper_plugin.speech_llm.compatibility import resolve_speech_features
from tests.support.audio import tone, write_wav
from tests.support.cards import SessionCards
from tests.support.corpus import stage1_args
from tests.support.feature_store import Utterance, write_feature_store
from tests.support.in_process import run_speechmapper_commands
from tests.support.recipes import (
    REPO,
    run_with_installed_plugin,
)

ENCODER = "test_sm4t_hf"
TRAINED = SpeechFeaturesConfig(encoder=ENCODER, layer=2, layer_norm=False)
"""Not the encoder's default (layer 4 of 4, after the final LayerNorm)."""

GENERATION = GenerationConfig(max_new_tokens=8)
INSTRUCTION = "Transcribe the audio.\n<speech>"


def _projector(features: SpeechFeaturesConfig | None) -> SpeechMapperProjector:
    model = load_model("test_projector_llama", device=torch.device("cpu"))
    assert isinstance(model, SpeechMapperProjector)
    model.config = replace(model.config, speech_features=features)
    return model.eval()


@cache
def _sfm() -> SM4TSpeechEncoder:
    model = load_model(ENCODER, device=torch.device("cpu"))
    assert isinstance(model, SM4TSpeechEncoder)
    return model


@cache
def _llm() -> TransformerLM:
    model = load_model("test_llama", device=torch.device("cpu"))
    assert isinstance(model, TransformerLM)
    return model


def _pipeline(projector: SpeechMapperProjector, **options: Any) -> SpeechMapperPipeline:
    return SpeechMapperPipeline(
        _sfm(),
        projector,
        _llm(),
        load_tokenizer("test_llama"),
        llm_name="test_llama",
        device="cpu",
        **({"generation": GENERATION} | options),
    )


def _hand_extracted(wav: Path, layer: int, layer_norm: bool) -> torch.Tensor:
    """``[frames, 64]`` features of ``layer``, not averaged: the reference."""
    extractor = SpeechFeatureExtractor(_sfm(), layer=layer, layer_norm=layer_norm)
    features, lengths = extractor([load_audio(wav)])
    return features[0, : int(lengths[0])]


def _log_probs(result: PipelineResult) -> torch.Tensor:
    return torch.tensor(result.generation.best.token_log_probs)


def _store(
    path: Path, *, layer: int = 2, layer_norm: bool = False, seed: int = 0
) -> FeatureStore:
    generator = torch.Generator().manual_seed(seed)
    utterances = [
        Utterance(f"u{i}", torch.randn(60, 64, generator=generator), "a dog")
        for i in range(4)
    ]
    write_feature_store(
        path, utterances, encoder=ENCODER, layer=layer, layer_norm=layer_norm
    )
    return FeatureStore(path)


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wav(tmp_path_factory.mktemp("features_audio") / "a.wav", tone(1.5))


# -- training records what its stores hold ------------------------------------


def test_training_records_the_stores_features_and_refuses_others(
    tmp_path: Path,
) -> None:
    train, dev = _store(tmp_path / "train"), _store(tmp_path / "dev", seed=1)
    projector = _projector(None)

    record_speech_features(projector, [train, dev])
    assert projector.config.speech_features == TRAINED

    # A split of another layer: both stores are named.
    other = _store(tmp_path / "layer3", layer=3)
    with pytest.raises(RecipeError) as caught:
        record_speech_features(_projector(None), [train, other])
    assert str(train.path) in str(caught.value)
    assert str(other.path) in str(caught.value)

    # A projector trained on layer 2 (stage 2, a resumed run) refuses layer 3
    # and another LayerNorm choice; the check lives in feature_store_problem.
    with pytest.raises(RecipeError, match=r"layer 3 \(trained on layer 2\)"):
        record_speech_features(_projector(TRAINED), [other])
    normed = _store(tmp_path / "normed", layer_norm=True)
    problem = feature_store_problem(normed, _projector(TRAINED).config)
    assert problem is not None and "layer_norm True" in problem
    assert feature_store_problem(train, _projector(TRAINED).config) is None


# -- exports carry the record ---------------------------------------------------


def test_a_stage2_export_names_its_speech_encoder(tmp_path: Path) -> None:
    """Stage 2's run config lists `feature_stores`, not stage-1 splits: the
    export takes the record from the projector config."""
    out = export_projector(
        _projector(TRAINED),
        tmp_path / "export",
        name="layer2_projector",
        provenance=ProjectorProvenance(stage="stage2"),
    ).parent

    summary = read_export_summary(out)
    assert summary["speech_encoder"] == {
        "card": ENCODER,
        "layer": 2,
        "layer_norm": False,
        "frame_averaging": 2,
    }
    card = yaml.safe_load((out / "card.yaml").read_text())
    assert card["model_config"]["speech_features"] == {
        "encoder": ENCODER,
        "layer": 2,
        "layer_norm": False,
    }
    assert (
        "layer 2 (before the encoder's final LayerNorm)"
        in (out / "README.md").read_text()
    )


def test_run_provenance_reads_stage2_feature_stores(tmp_path: Path) -> None:
    """For checkpoints older than the record: stage 2's stores name it too."""
    store = _store(tmp_path / "store")
    run = tmp_path / "run"
    run.mkdir()
    config = {
        "loss": {"sigma": 0.9},
        "llm": {"name": "test_llama"},
        "dataset": {
            "config_overrides": {
                "splits": {"train": [str(tmp_path / "train.jsonl")]},
                "feature_stores": [str(store.path)],
            }
        },
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))

    provenance = read_run_provenance(run)
    assert provenance.stage == "stage2"
    assert provenance.sfm is not None
    assert (provenance.sfm.card, provenance.sfm.layer) == (ENCODER, 2)
    assert provenance.sfm.layer_norm is False


# -- the pipeline uses it ---------------------------------------------------------


def test_pipeline_defaults_to_the_recorded_layer(wav: Path) -> None:
    pipeline = _pipeline(_projector(TRAINED))
    assert (pipeline.extractor.layer, pipeline.extractor.layer_norm) == (2, False)

    # The same answer as layer-2 features extracted by hand ...
    [from_audio] = pipeline.run(wav, INSTRUCTION)
    [by_hand] = pipeline.run(
        _hand_extracted(wav, 2, False), INSTRUCTION, features=True, pre_averaged=False
    )
    assert from_audio.token_ids == by_hand.token_ids
    torch.testing.assert_close(
        _log_probs(from_audio), _log_probs(by_hand), atol=1e-4, rtol=0
    )

    # ... and not the encoder's default layer's (the control).
    [default_layer] = pipeline.run(
        _hand_extracted(wav, 4, True), INSTRUCTION, features=True, pre_averaged=False
    )
    assert not torch.allclose(
        _log_probs(from_audio)[:1], _log_probs(default_layer)[:1], atol=1e-3
    )


def test_pipeline_refuses_another_layer_unless_allowed() -> None:
    with pytest.raises(IncompatibleComponentsError) as caught:
        _pipeline(_projector(TRAINED), sfm_layer=4)
    message = str(caught.value)
    assert "layer 4 (trained on layer 2)" in message
    assert "allow_feature_mismatch=True" in message

    with pytest.raises(IncompatibleComponentsError, match="layer_norm True"):
        _pipeline(_projector(TRAINED), sfm_layer_norm=True)

    allowed = _pipeline(_projector(TRAINED), sfm_layer=4, allow_feature_mismatch=True)
    assert (allowed.extractor.layer, allowed.extractor.layer_norm) == (4, False)

    # Without a record: the encoder's default, as before.
    unrecorded = _pipeline(_projector(None))
    assert (unrecorded.extractor.layer, unrecorded.extractor.layer_norm) == (4, True)


def test_another_encoder_card_is_refused() -> None:
    config = _projector(TRAINED).config
    with pytest.raises(IncompatibleComponentsError, match="encoder 'other_encoder'"):
        resolve_speech_features(config, encoder="other_encoder")
    # An `@env` variant of the same card is the same encoder.
    assert resolve_speech_features(config, encoder=f"{ENCODER}@user") == (
        f"{ENCODER}@user",
        2,
        False,
    )


_FROM_CARDS = """
import json, sys, torch
from pathlib import Path
from fairseq2 import init_fairseq2
from fairseq2.composition import register_file_assets

export_dir, card_dir, features_file, out = map(Path, sys.argv[1:5])

def extras(container):
    register_file_assets(container, export_dir)
    register_file_assets(container, card_dir)

init_fairseq2(extras=extras)

from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.speech_llm import SpeechMapperPipeline

def load(sfm, **options):
    return SpeechMapperPipeline.from_cards(
        sfm, "layer2_projector", "test_llama", device="cpu",
        generation=GenerationConfig(max_new_tokens=8), **options
    )

result = {}
pipeline = load(None)
result["default"] = [pipeline.extractor.layer, pipeline.extractor.layer_norm]
features = torch.load(features_file)
[a] = pipeline.run(features["wav"], "Transcribe the audio.\\n<speech>")
[b] = pipeline.run(features["layer2"], "Transcribe the audio.\\n<speech>",
                   features=True, pre_averaged=False)
result["log_probs"] = [a.generation.best.token_log_probs, b.generation.best.token_log_probs]
try:
    load("test_sm4t_hf", sfm_layer=4)
    result["refused"] = None
except ValueError as ex:
    result["refused"] = str(ex)
out.write_text(json.dumps(result))
"""


def test_from_cards_takes_encoder_and_layer_from_the_export(
    wav: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    """``from_cards(None, export, llm)``: the card's record, in a fresh process
    that registers only the export and the session's cards."""
    export = tmp_path / "export"
    export_projector(_projector(TRAINED), export, name="layer2_projector")
    features = tmp_path / "features.pt"
    torch.save(
        {"wav": load_audio(wav), "layer2": _hand_extracted(wav, 2, False)}, features
    )

    out = tmp_path / "result.json"
    run_with_installed_plugin(
        _FROM_CARDS,
        str(export),
        str(test_cards.card_dir),
        str(features),
        str(out),
        cwd=tmp_path,
    )
    result = json.loads(out.read_text())

    assert result["default"] == [2, False]
    torch.testing.assert_close(
        torch.tensor(result["log_probs"][0]),
        torch.tensor(result["log_probs"][1]),
        atol=1e-4,
        rtol=0,
    )
    # Refused before any weights load (the override: in-process tests above).
    assert "layer 4 (trained on layer 2)" in result["refused"]


# -- from training to generate and evaluate -------------------------------------


def _extracted_store(path: Path, wavs: list[Path]) -> Path:
    """Layer-2 features of ``wavs`` as the extraction recipe stores them
    (averaged 2:1), with the store's own writer."""
    extractor = SpeechFeatureExtractor(
        _sfm(), layer=2, layer_norm=False, frame_averaging=2
    )
    features, lengths = extractor([load_audio(w) for w in wavs])
    utterances = [
        Utterance(w.stem, features[i, : int(lengths[i])], "a dog")
        for i, w in enumerate(wavs)
    ]
    return write_feature_store(
        path, utterances, encoder=ENCODER, layer=2, layer_norm=False
    )


def _settings(out: Path) -> dict[str, Any]:
    return json.loads((out / "generation_settings.json").read_text())


@pytest.mark.slow
def test_a_non_default_layer_travels_from_training_to_generate_and_evaluate(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    """Stage 1 and stage 2 on layer-2 features record it in their checkpoint
    cards and the stage-2 export; generate and evaluate (no `features.layer`,
    no `sfm.name`) then extract layer 2 and refuse layer 4 unless allowed."""
    wavs = [
        write_wav(tmp_path / "audio" / f"u{i}.wav", tone(2.0 + 0.3 * i, seed=i))
        for i in range(4)
    ]
    store = _extracted_store(tmp_path / "store", wavs)
    cards = f"common.assets.extra_paths=[{test_cards.card_dir}]"
    short = [
        "regime.num_steps=2",
        "regime.publish_metrics_every_n_steps=1",
        "regime.validate_at_start=false",
        "regime.validate_every_n_steps=2",
        "regime.checkpoint_every_n_steps=2",
        "lr_scheduler.config.num_warmup_steps=1",
    ]

    records = [SpeechRecord(id=w.stem, transcript="a dog", lang="en") for w in wavs]
    instructions = tmp_path / "train.jsonl"
    write_instructions(instructions, build_asr_examples(records, pool="train"))

    # generate and evaluate on the audio, neither layer nor LayerNorm given.
    manifest = tmp_path / "test.tsv"
    rows = [f"{w.stem}\t{w}\t\ta dog\ten" for w in wavs[:2]]
    manifest.write_text("id\taudio\tnum_samples\ttext\tlang\n" + "\n".join(rows) + "\n")

    stage1, stage2, export = (
        tmp_path / "stage1",
        tmp_path / "stage2",
        tmp_path / "export",
    )
    generated, evaluated = tmp_path / "generate", tmp_path / "evaluate"
    inputs = [
        "model.name=stage2_layer2",
        "llm.name=test_llama",
        f"common.assets.extra_paths=[{test_cards.card_dir}, {export}]",
        f"input.manifest={manifest}",
        "prompt.task=asr",
    ]

    def config(recipe: str) -> list[str]:
        return ["--config-file", str(REPO / f"recipes/{recipe}/configs/tiny.yaml")]

    def recipe(*argv: str) -> list[str]:
        return [*argv, "--no-rich"]

    # Every run in one process, in order (each reads the one before): one
    # import of torch and fairseq2 instead of six.
    ran = run_speechmapper_commands(
        [
            recipe("stage1", str(stage1), *stage1_args(store, test_cards, *short)),
            recipe(
                "stage2",
                str(stage2),
                *config("stage2"),
                "--config",
                f"common.assets.prev_checkpoint_dir={stage1 / 'checkpoints'}",
                "llm.name=test_llama",
                f"dataset.config_overrides={{splits: {{train: [{instructions}], dev: [{instructions}]}}, feature_stores: [{store}]}}",
                cards,
                *short,
            ),
            ["export", str(stage2), str(export), "--name", "stage2_layer2"],
            recipe(
                "generate", str(generated), *config("generate"), "--config", *inputs
            ),
            recipe(
                "generate",
                str(tmp_path / "refused"),
                *config("generate"),
                "--config",
                *inputs,
                "features.layer=4",
            ),
            # evaluate's tiny config names SeamlessM4T-v2 large: name the tiny card.
            recipe(
                "evaluate",
                str(evaluated),
                *config("evaluate"),
                "--config",
                *inputs,
                f"sfm.name={ENCODER}",
                "scoring.comet=false",
            ),
        ]
    )
    (trained1, trained2, exported, generate_run, refused, evaluate_run) = ran
    for code, output in (trained1, trained2, exported, generate_run, evaluate_run):
        assert code == 0, output[-4000:]

    recorded = {"encoder": ENCODER, "layer": 2, "layer_norm": False}
    for run in (stage1, stage2):
        card = yaml.safe_load((run / "checkpoints" / "model.yaml").read_text())
        assert card["model_config"]["speech_features"] == recorded, run.name

    summary = read_export_summary(export)
    assert summary["stage"] == "stage2"
    assert summary["speech_encoder"] == {
        "card": ENCODER,
        "layer": 2,
        "layer_norm": False,
        "frame_averaging": 2,
    }

    settings = _settings(generated)
    assert settings["models"]["sfm"]["name"] == ENCODER  # from the record
    assert settings["features"] == {
        "layer": 2,
        "layer_norm": False,
        "allow_mismatch": False,
    }

    # The hypotheses are those of layer-2 features fed by hand to the export.
    projector = get_speechmapper_model_hub().load_custom_model(
        export / "model.safetensors",
        export_config(summary),  # type: ignore[arg-type]
        device=torch.device("cpu"),
    )
    reference = _pipeline(
        projector.eval(),
        generation=GenerationConfig(max_new_tokens=32, max_gen_len=(1.0, 16)),
    )
    expected = reference.run(
        [_hand_extracted(w, 2, False) for w in wavs[:2]],
        reference.prompts.transcription(),
        features=True,
        pre_averaged=False,
    )
    hypotheses = [
        json.loads(line)["hypothesis"]
        for line in (generated / "hypotheses.jsonl").read_text().splitlines()
    ]
    assert hypotheses == [result.text for result in expected]

    code, output = refused
    assert code != 0
    assert "layer 4 (trained on layer 2)" in output
    assert "features.allow_mismatch=true" in output

    assert _settings(evaluated)["features"]["layer"] == 2
    assert (evaluated / "summary.json").is_file()
