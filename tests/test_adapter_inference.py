"""Adapters (``speech_adapter``) at inference: the pipeline, the generate and
evaluate recipes take a fixed-rate adapter (``conv_tiny``) and the
variable-length ones (``cif_tiny``, ``ctc_compression_tiny``).

The adapters have random weights (cards from ``tests/support/cards.py``,
``target_llm: test_llama``); the tests check lengths, batching and that the
prompt holds exactly what the adapter emitted, against direct calls of the
speech encoder and the adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from fairseq2.nn import BatchLayout

from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.models.adapters import SpeechAdapter
from speechmapper_plugin.models.projector_base import ProjectorInputTooShortError
from speechmapper_plugin.speech_llm import (
    IncompatibleComponentsError,
    SpeechMapperPipeline,
)
from speechmapper_plugin.speech_llm import pipeline as pipeline_module
from speechmapper_plugin.speech_llm.audio_inputs import (
    SpeechTooLongError,
    SpeechTooShortError,
)
from tests.support.audio import synthesize_corpus, tone, write_wav
from tests.support.cards import SessionCards
from tests.support.llm import training_sentences
from tests.support.recipes import REPO, run_recipe, run_with_installed_plugin
from tests.test_pipeline import assert_same_result

CONV = "test_adapter_conv_llama"
CIF = "test_adapter_cif_llama"
CTC = "test_adapter_ctc_llama"

INSTRUCTION = "Transcribe the audio.\n<speech>"


def _pipeline(adapter: str, **kwargs: object) -> SpeechMapperPipeline:
    return SpeechMapperPipeline.from_cards(
        "test_sm4t_hf",
        adapter,
        "test_llama",
        device="cpu",
        generation=GenerationConfig(max_new_tokens=6),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module", params=[CONV, CIF, CTC])
def pipeline(request: pytest.FixtureRequest) -> SpeechMapperPipeline:
    return _pipeline(request.param)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("adapter_audio")
    return [
        write_wav(root / f"a{i}.wav", tone(seconds, freq=freq, seed=i))
        for i, (seconds, freq) in enumerate(
            [(1.2, 180.0), (2.5, 240.0), (0.9, 300.0), (1.7, 140.0)]
        )
    ]


def _direct_outputs(
    pipeline: SpeechMapperPipeline, waveforms: list[torch.Tensor]
) -> list[torch.Tensor]:
    """The adapter's outputs for each waveform alone: speech encoder and
    adapter called directly, not through the pipeline's batching."""
    outputs = []
    with torch.inference_mode():
        for waveform in waveforms:
            features, lens = pipeline.extractor([waveform])
            layout = BatchLayout.of(features, lens.tolist())
            speech, speech_layout = pipeline.projector(features, layout)
            outputs.append(speech[0, : speech_layout.seq_lens[0]])
    return outputs


def test_the_pipeline_loads_an_adapter_card(pipeline: SpeechMapperPipeline) -> None:
    assert isinstance(pipeline.projector, SpeechAdapter)
    assert not pipeline.projector.training


def test_a_batch_equals_one_by_one(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    instructions = [INSTRUCTION, "Repeat what was said.\n<speech>"] * 2

    batched = pipeline.run(wavs, instructions, batch_size=3)

    for path, instruction, result in zip(wavs, instructions, batched, strict=True):
        (alone,) = pipeline.run(path, instruction)
        assert_same_result(result, alone)


def test_speech_positions_are_what_the_adapter_emits(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    from speechmapper_plugin.audio import load_audio

    waveforms = [load_audio(p) for p in wavs]
    direct = _direct_outputs(pipeline, waveforms)
    results = pipeline.run(waveforms, INSTRUCTION)

    config = pipeline.projector.config
    for waveform, result, outputs in zip(waveforms, results, direct, strict=True):
        real = outputs.size(0)
        assert result.num_speech_positions == real
        bound = pipeline.check_audio(waveform.numel(), INSTRUCTION)
        if config.variable_length:
            assert 1 <= real <= bound
        else:
            assert real == bound

    if config.variable_length:
        # Random weights fire well below one output per frame: the real
        # lengths, not the bound, went into the prompts.
        assert any(
            r.num_speech_positions < pipeline.check_audio(w.numel(), INSTRUCTION)
            for w, r in zip(waveforms, results, strict=True)
        )


def test_the_prefill_holds_the_adapter_outputs(
    wavs: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the prompt's prefix and suffix the LLM sees exactly the CIF
    outputs of the utterance (its real length), also when batched with a
    longer one."""
    from speechmapper_plugin.audio import load_audio
    from speechmapper_plugin.llm import embed_token_ids

    pipeline = _pipeline(CIF)
    waveforms = [load_audio(wavs[1]), load_audio(wavs[2])]
    direct = _direct_outputs(pipeline, waveforms)
    prompt = pipeline.encode_prompt(INSTRUCTION)

    seen: list[torch.Tensor] = []
    generate = pipeline_module.generate_from_embeddings

    def spy(
        llm: object, embeds: torch.Tensor, *args: object, **kwargs: object
    ) -> object:
        seen.append(embeds.detach().clone())
        return generate(llm, embeds, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline_module, "generate_from_embeddings", spy)
    results = pipeline.run(waveforms, INSTRUCTION)

    (prefill,) = seen
    start = len(prompt.prefix_ids)
    with torch.inference_mode():
        suffix = embed_token_ids(
            pipeline.llm, torch.tensor(prompt.suffix_ids, dtype=torch.int64)
        )
    for row, (result, outputs) in enumerate(zip(results, direct, strict=True)):
        n = outputs.size(0)
        assert result.num_speech_positions == n
        torch.testing.assert_close(
            prefill[row, start : start + n], outputs, atol=1e-5, rtol=0
        )
        torch.testing.assert_close(
            prefill[row, start + n : start + n + len(prompt.suffix_ids)],
            suffix,
            atol=1e-6,
            rtol=0,
        )


def test_too_short_audio_is_refused_by_the_adapter_s_own_minimum(
    pipeline: SpeechMapperPipeline,
) -> None:
    config = pipeline.projector.config
    shortest = pipeline.min_num_samples
    frames = config.min_input_frames()

    # The adapter module itself: `frames` give an output, one fewer none.
    features = torch.randn(1, frames, config.input_dim)
    with torch.inference_mode():
        _, layout = pipeline.projector(features, BatchLayout.of(features, [frames]))
        assert layout.seq_lens[0] >= 1
        with pytest.raises(ProjectorInputTooShortError):
            pipeline.projector(
                features[:, :-1], BatchLayout.of(features[:, :-1], [frames - 1])
            )

    assert pipeline.check_audio(shortest, INSTRUCTION) >= 1
    with pytest.raises(SpeechTooShortError, match=f"at least {shortest / 16000:.3f} s"):
        pipeline.check_audio(shortest - 1, INSTRUCTION)

    waveform = torch.from_numpy(tone(shortest / 16000, freq=200.0, seed=3)).float()
    (result,) = pipeline.run(waveform[:shortest], INSTRUCTION)
    assert result.num_speech_positions >= 1


def test_the_context_check_uses_the_upper_bound_for_variable_length() -> None:
    pipeline = _pipeline(CIF)
    config = pipeline.projector.config
    prompt = pipeline.encode_prompt(INSTRUCTION)
    room = pipeline.llm.max_seq_len - len(prompt.prefix_ids) - len(prompt.suffix_ids)

    # The most frames whose bound still leaves room, and one more.
    frames = room - 1
    assert config.max_output_length(frames, pre_averaged=True) == room - 1
    assert pipeline.check_features(frames, INSTRUCTION, pre_averaged=True) == room - 1
    with pytest.raises(SpeechTooLongError, match=f"up to {room} speech embeddings"):
        pipeline.check_features(frames + 1, INSTRUCTION, pre_averaged=True)


def test_an_adapter_for_another_llm_is_refused_before_loading() -> None:
    with pytest.raises(IncompatibleComponentsError, match="'test_llama'"):
        SpeechMapperPipeline.from_cards(
            "test_sm4t_hf", CIF, "test_eurollm", device="cpu"
        )


def test_a_non_projector_card_is_named_as_such() -> None:
    with pytest.raises(ValueError, match="not a projector card"):
        SpeechMapperPipeline.from_cards(
            "test_sm4t_hf", "test_sm4t_hf", "test_llama", device="cpu"
        )


# -- recipes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("adapter_corpus")
    return synthesize_corpus(root, training_sentences(400)[80:84], speed=130)


def _recipe_args(cards: SessionCards, adapter: str, manifest: Path) -> list[str]:
    return [
        "--config-file",
        str(REPO / "recipes/evaluate/configs/tiny.yaml"),
        "--config",
        f"model.name={adapter}",
        "sfm.name=test_sm4t_hf",
        "llm.name=test_llama",
        f"common.assets.extra_paths=[{cards.card_dir}]",
        f"input.manifest={manifest}",
        "prompt.task=asr",
        "generation.max_new_tokens=6",
        "scoring.comet=false",
    ]


@pytest.mark.slow
@pytest.mark.parametrize("adapter", [CONV, CIF])
def test_evaluate_runs_an_adapter_and_matches_the_pipeline(
    adapter: str,
    manifest: Path,
    test_cards: SessionCards,
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    run_recipe("evaluate", out, *_recipe_args(test_cards, adapter, manifest))

    records = [
        json.loads(line)
        for line in (out / "hypotheses.jsonl").read_text().splitlines()
        if line
    ]
    assert len(records) == 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["asr"]["num_examples"] == 4
    assert summary["models"]["projector"]["name"] == adapter

    # The same adapter in-process, one utterance at a time.
    pipeline = _pipeline(adapter)
    pipeline.generation = GenerationConfig(max_new_tokens=6, max_gen_len=(1.0, 16))
    rows = [line.split("\t") for line in manifest.read_text().splitlines()[1:]]
    audio = {row[0]: manifest.parent / row[1] for row in rows}
    for record in records:
        (alone,) = pipeline.run(audio[record["id"]], record["instruction"])
        assert record["num_speech_positions"] == alone.num_speech_positions
        assert record["hypothesis"] == alone.text


# -- export ----------------------------------------------------------------------


def test_an_adapter_exports_and_loads_back_bit_identically(
    test_cards: SessionCards, tmp_path: Path
) -> None:
    """Weights, config and outputs survive the export, also through
    ``load_model`` and ``from_cards`` in a fresh process."""

    import safetensors.torch
    import yaml
    from fairseq2.models import load_model

    from speechmapper_plugin.export.projector import (
        export_config,
        export_projector,
        read_export_summary,
    )
    from speechmapper_plugin.models.adapters import get_speech_adapter_model_hub
    from tests.test_export import _FRESH_PROCESS

    adapter = load_model(CIF, device=torch.device("cpu"))
    assert isinstance(adapter, SpeechAdapter)
    adapter.eval()

    out = tmp_path / "export"
    export_projector(adapter, out, name="my_exported_projector")

    card = yaml.safe_load((out / "card.yaml").read_text())
    assert card["model_family"] == "speech_adapter"
    assert card["model_config"]["kind"] == "cif"
    assert "A `cif` adapter" in (out / "README.md").read_text()

    saved = safetensors.torch.load_file(out / "model.safetensors")
    original = adapter.state_dict()
    assert saved.keys() == original.keys()
    assert all(torch.equal(saved[k], original[k]) for k in original)

    config = export_config(read_export_summary(out))
    assert config == adapter.config
    loaded = get_speech_adapter_model_hub().load_custom_model(
        out / "model.safetensors", config, device=torch.device("cpu")
    )

    features = torch.randn(2, 120, 64, generator=torch.Generator().manual_seed(0))
    layout = BatchLayout.of(features, [120, 90])
    with torch.no_grad():
        expected, expected_layout = adapter(features, layout, pre_averaged=True)
        actual, actual_layout = loaded.eval()(features, layout, pre_averaged=True)
    assert torch.equal(actual, expected)
    assert actual_layout.seq_lens == expected_layout.seq_lens

    torch.save(features, tmp_path / "features.pt")
    run_with_installed_plugin(
        _FRESH_PROCESS, str(out), str(test_cards.card_dir), str(tmp_path), cwd=tmp_path
    )
    outputs = torch.load(tmp_path / "outputs.pt")
    assert torch.equal(outputs["load_model"], expected)
    assert torch.equal(outputs["pipeline"], expected)


@pytest.mark.slow
def test_generate_refuses_an_adapter_for_another_llm_before_loading(
    manifest: Path, test_cards: SessionCards, tmp_path: Path
) -> None:
    args = _recipe_args(test_cards, CIF, manifest) + ["llm.name=test_eurollm"]
    args[1] = str(REPO / "recipes/generate/configs/tiny.yaml")
    args.remove("scoring.comet=false")
    done = run_recipe("generate", tmp_path / "out", *args, check=False)

    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert (
        f"The projector ('{CIF}') was trained for the LLM 'test_llama' (its `target_llm`), but the LLM is 'test_eurollm'"
        in output
    )
    assert "Traceback" not in output
    assert "Loading" not in output  # no model weights were read
