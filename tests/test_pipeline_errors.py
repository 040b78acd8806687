"""Bad input to SpeechMapperPipeline: clear errors, raised before the heavy work.

"Heavy work" is loading model weights (for mismatched cards) or running the
speech encoder, the projector or the LLM (for bad audio or instructions):
forward hooks on the three models and a patched weight loader prove none of
it happened when the error was raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fairseq2.data.tokenizers import load_tokenizer
from fairseq2.models import load_model
from fairseq2.utils.validation import ValidationError

from speechmapper_plugin.data.instructions import InstructionFormatError
from speechmapper_plugin.data.reasons import (
    EMPTY_AUDIO,
    INVALID_AUDIO,
    NON_FINITE_FEATURES,
    TOO_LONG_FOR_LLM,
    TOO_SHORT_AUDIO,
)
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.models.speechmapper import (
    SpeechMapperConfig,
    create_speechmapper_model,
)
from speechmapper_plugin.speech_llm import (
    AudioInputError,
    IncompatibleComponentsError,
    PipelineResult,
    SkippedInput,
    SpeechMapperPipeline,
    SpeechTooLongError,
    SpeechTooShortError,
    TaskPrompts,
    pipeline_cards,
)
from tests.support.audio import tone, write_corrupt, write_too_short, write_wav

TRANSCRIBE = "Transcribe the audio.\n<speech>"


@pytest.fixture
def forward_calls(pipeline: SpeechMapperPipeline) -> Iterator[list[str]]:
    """The names of the models whose forward ran during the test."""
    calls: list[str] = []
    modules = {
        "sfm": pipeline.extractor.model,
        "projector": pipeline.projector,
        "llm": pipeline.llm,
    }
    handles = [
        module.register_forward_pre_hook(lambda *_, name=name: calls.append(name))
        for name, module in modules.items()
    ]
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()


@pytest.fixture(scope="module")
def good_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wav(tmp_path_factory.mktemp("errors") / "good.wav", tone(1.5))


@pytest.fixture
def no_weight_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("model weights were loaded before the check failed")

    monkeypatch.setattr(pipeline_cards, "load_model", refuse)


# -- audio with no speech frames ---------------------------------------------


def test_too_short_audio_is_named_before_any_model_runs(
    pipeline: SpeechMapperPipeline, forward_calls: list[str], tmp_path: Path
) -> None:
    short = write_too_short(tmp_path / "short.wav", num_samples=8_000)  # 0.5 s

    with pytest.raises(SpeechTooShortError) as caught:
        pipeline.transcribe(short)

    message = str(caught.value)
    assert str(short) in message
    assert "0.500 s of audio gives no speech frames" in message
    assert "at least 0.655 s" in message
    assert forward_calls == []


def test_too_short_audio_in_a_batch_names_its_position(
    pipeline: SpeechMapperPipeline, forward_calls: list[str], good_wav: Path
) -> None:
    # Long enough for the speech encoder (560 samples), too short for the projector.
    short = torch.from_numpy(tone(0.3))

    with pytest.raises(SpeechTooShortError, match=r"^audio input 2 \(waveform of"):
        pipeline.generate([good_wav, good_wav, short], TRANSCRIBE)

    assert forward_calls == []


def test_audio_too_short_even_for_the_encoder(
    pipeline: SpeechMapperPipeline, forward_calls: list[str]
) -> None:
    with pytest.raises(SpeechTooShortError, match="0.019 s of audio"):
        pipeline.transcribe(torch.zeros(300))
    assert forward_calls == []


def test_audio_too_long_for_the_llm(
    pipeline: SpeechMapperPipeline, forward_calls: list[str]
) -> None:
    # 40 s gives ~250 speech embeddings; the tiny LLM takes 256 positions.
    with pytest.raises(SpeechTooLongError, match="leaving no room to generate"):
        pipeline.transcribe(torch.from_numpy(tone(40.0)))
    assert forward_calls == []


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: write_corrupt(d / "corrupt.wav"), "cannot be decoded as audio"),
        (lambda d: d / "missing.wav", "the file does not exist"),
        (lambda d: torch.zeros(2, 16_000), "must be 1-D"),
        (lambda d: torch.zeros(16_000, dtype=torch.int16), "floating point"),
        (lambda d: torch.full((16_000,), float("nan")), "NaN"),
        (lambda d: 3.5, "expected a path"),
    ],
)
def test_unusable_audio_is_named(
    pipeline: SpeechMapperPipeline,
    forward_calls: list[str],
    good_wav: Path,
    tmp_path: Path,
    make: object,
    reason: str,
) -> None:
    bad = make(tmp_path)  # type: ignore[operator]

    with pytest.raises(AudioInputError, match=r"^audio input 1 ") as caught:
        pipeline.transcribe([good_wav, bad])

    assert reason in str(caught.value)
    assert forward_calls == []


def test_sample_rate_is_for_arrays_only(
    pipeline: SpeechMapperPipeline, good_wav: Path
) -> None:
    with pytest.raises(AudioInputError, match="applies to waveform arrays only"):
        pipeline.transcribe(good_wav, sample_rate=8_000)


def count_checks(
    pipeline: SpeechMapperPipeline, monkeypatch: pytest.MonkeyPatch
) -> list[int]:
    """The ``num_samples`` of every :meth:`check_audio` call from now on."""
    calls: list[int] = []
    original = pipeline.check_audio

    def counted(num_samples: int, *args: object, **kwargs: object) -> object:
        calls.append(num_samples)
        return original(num_samples, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline, "check_audio", counted)
    return calls


def test_every_input_is_checked_once(
    pipeline: SpeechMapperPipeline, monkeypatch: pytest.MonkeyPatch, good_wav: Path
) -> None:
    calls = count_checks(pipeline, monkeypatch)
    waveform = torch.from_numpy(tone(1.2))

    pipeline.generate([good_wav, waveform], TRANSCRIBE, batch_size=1)

    assert sorted(calls) == sorted([24_000, waveform.numel()])


def test_skip_generates_the_usable_ones(
    pipeline: SpeechMapperPipeline,
    forward_calls: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    good = torch.from_numpy(tone(1.5))
    short = torch.from_numpy(tone(0.3))
    long = torch.from_numpy(tone(40.0))
    (alone,) = pipeline.run(good, TRANSCRIBE)
    forward_calls.clear()
    calls = count_checks(pipeline, monkeypatch)

    outcomes = pipeline.run(
        [short, good, long], TRANSCRIBE, on_error="skip", names=["s", "g", "l"]
    )

    assert sorted(calls) == sorted(w.numel() for w in (short, good, long))
    assert forward_calls.count("sfm") == 1  # one batch, of the usable input
    first, second, third = outcomes
    assert isinstance(first, SkippedInput) and first.text is None
    assert isinstance(first.error, SpeechTooShortError)
    assert first.error.code == TOO_SHORT_AUDIO and first.error.where == "s"
    assert "0.300 s of audio gives no speech frames" in first.error.problem.detail
    assert isinstance(third, SkippedInput) and third.error.code == TOO_LONG_FOR_LLM
    assert "leaving no room to generate" in third.error.problem.detail
    assert isinstance(second, PipelineResult) and second.error is None
    assert second.generation.tokens == alone.generation.tokens


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (torch.zeros(0), EMPTY_AUDIO),
        (torch.from_numpy(tone(0.3)), TOO_SHORT_AUDIO),
        (torch.full((16_000,), float("nan")), INVALID_AUDIO),
    ],
    ids=["empty", "too-short", "nan"],
)
def test_a_batch_call_skips_a_bad_input_and_returns_its_error_in_place(
    pipeline: SpeechMapperPipeline,
    good_wav: Path,
    bad: torch.Tensor,
    code: str,
) -> None:
    other = torch.from_numpy(tone(1.2, freq=330.0, seed=4))
    expected = pipeline.transcribe([good_wav, other])

    with pytest.raises(AudioInputError, match=r"^audio input 1 "):
        pipeline.transcribe([good_wav, bad, other])

    first, skipped, third = pipeline.transcribe([good_wav, bad, other], on_error="skip")

    assert [first, third] == expected
    assert isinstance(skipped, SkippedInput) and skipped.text is None
    assert skipped.error.code == code
    assert str(skipped.error).startswith("audio input 1 (waveform of shape")


def test_skip_counts_non_finite_features(pipeline: SpeechMapperPipeline) -> None:
    dim = pipeline.projector.config.input_dim
    good = torch.randn(40, dim, generator=torch.Generator().manual_seed(0))
    nan = good.clone()
    nan[3, 1] = float("nan")
    short = good[:2]

    outcomes = pipeline.run(
        [nan, good, short], TRANSCRIBE, features=True, on_error="skip"
    )

    assert [
        o.error.code if isinstance(o, SkippedInput) else "generated" for o in outcomes
    ] == [NON_FINITE_FEATURES, "generated", TOO_SHORT_AUDIO]
    (expected,) = pipeline.run([good], TRANSCRIBE, features=True)
    assert isinstance(outcomes[1], PipelineResult)
    assert outcomes[1].generation.tokens == expected.generation.tokens

    # The raising variant names the input and says what is wrong.
    with pytest.raises(AudioInputError, match="^features 0: the features hold NaN"):
        pipeline.run([nan, good], TRANSCRIBE, features=True)
    with pytest.raises(SpeechTooShortError, match="^features 1: 2 speech-encoder"):
        pipeline.run([good, short], TRANSCRIBE, features=True)


def test_an_unknown_target_language_code_is_refused_before_any_model_runs(
    pipeline: SpeechMapperPipeline, forward_calls: list[str], good_wav: Path
) -> None:
    with pytest.raises(ValueError, match="Unknown target language code 'xx'") as caught:
        pipeline.translate(good_wav, "xx")

    assert "Known codes: ar, ca, cs," in str(caught.value)
    assert forward_calls == []
    assert pipeline.prompts.translation("zh-CN") == pipeline.prompts.translation(
        "Chinese"
    )
    assert "into Chinese." in pipeline.prompts.translation("zh-CN")


# -- instructions ------------------------------------------------------------


@pytest.mark.parametrize(
    "instruction",
    ["Transcribe the audio.", "Compare <speech> with <speech>.", ""],
)
def test_instruction_needs_exactly_one_placeholder(
    pipeline: SpeechMapperPipeline,
    forward_calls: list[str],
    good_wav: Path,
    instruction: str,
) -> None:
    with pytest.raises(InstructionFormatError, match="exactly once"):
        pipeline.generate(good_wav, instruction)

    # In a batch, the instruction's position is named; the audio is not even read.
    with pytest.raises(ValueError, match="^Instruction 1 must contain"):
        pipeline.generate(["/nonexistent.wav"] * 2, [TRANSCRIBE, instruction])

    assert forward_calls == []


def test_instructions_must_match_the_batch(
    pipeline: SpeechMapperPipeline, good_wav: Path
) -> None:
    with pytest.raises(ValueError, match="2 audio inputs, but 3 instructions"):
        pipeline.generate([good_wav, good_wav], [TRANSCRIBE] * 3)

    with pytest.raises(ValueError, match="must not be empty"):
        pipeline.answer(good_wav, "  ")


# -- components that do not fit ----------------------------------------------


def test_projector_trained_for_another_llm(no_weight_loading: None) -> None:
    with pytest.raises(IncompatibleComponentsError) as caught:
        SpeechMapperPipeline.from_cards(
            "test_sm4t_hf", "test_projector_eurollm", "test_llama"
        )

    message = str(caught.value)
    assert (
        "The projector 'test_projector_eurollm' was trained for the LLM 'test_eurollm' (its `target_llm`), but the LLM is 'test_llama'"
        in message
    )
    assert "model.config_overrides.target_llm=test_llama" in message


def test_llm_width_differs_from_the_projector_output(no_weight_loading: None) -> None:
    # `test_projector_base` outputs 32-d embeddings; test_llama's are 64-d.
    with pytest.raises(IncompatibleComponentsError) as caught:
        SpeechMapperPipeline.from_cards(
            "test_sm4t_hf", "test_projector_base", "test_llama"
        )

    assert (
        "The projector 'test_projector_base' outputs 32-d embeddings, but 'test_llama' has 64-d token embeddings"
        in str(caught.value)
    )


def test_every_mismatch_is_listed(no_weight_loading: None) -> None:
    with pytest.raises(IncompatibleComponentsError) as caught:
        SpeechMapperPipeline.from_cards(
            "test_sm4t_hf", "test_projector_base", "test_eurollm"
        )
    assert len(caught.value.problems) == 1  # no target_llm: only the width

    with pytest.raises(ValueError, match="is not a projector card"):
        SpeechMapperPipeline.from_cards("test_sm4t_hf", "test_llama", "test_llama")

    with pytest.raises(ValueError, match="No asset card named 'nope'"):
        SpeechMapperPipeline.from_cards("nope", "test_projector_llama", "test_llama")


@pytest.fixture(scope="module")
def parts() -> dict[str, object]:
    cpu = torch.device("cpu")
    return {
        "sfm": load_model("test_sm4t_hf", device=cpu),
        "projector": load_model("test_projector_llama", device=cpu),
        "llama": load_model("test_llama", device=cpu),
        "llama_tokenizer": load_tokenizer("test_llama"),
        "eurollm": load_model("test_eurollm", device=cpu),
        "eurollm_tokenizer": load_tokenizer("test_eurollm"),
    }


def test_loaded_parts_are_checked_too(parts: dict[str, object]) -> None:
    with pytest.raises(
        IncompatibleComponentsError, match="trained for the LLM 'test_llama'"
    ):
        SpeechMapperPipeline(
            parts["sfm"],  # type: ignore[arg-type]
            parts["projector"],  # type: ignore[arg-type]
            parts["eurollm"],  # type: ignore[arg-type]
            parts["eurollm_tokenizer"],  # type: ignore[arg-type]
            llm_name="test_eurollm",
        )


def test_speech_encoder_width_differs_from_the_projector_input(
    parts: dict[str, object],
) -> None:
    projector = create_speechmapper_model(
        SpeechMapperConfig(input_dim=32, output_dim=64, target_llm="test_llama")
    )

    with pytest.raises(
        IncompatibleComponentsError,
        match="takes 32-d speech features, but the speech encoder produces 64-d",
    ):
        SpeechMapperPipeline(
            parts["sfm"],  # type: ignore[arg-type]
            projector,
            parts["llama"],  # type: ignore[arg-type]
            parts["llama_tokenizer"],  # type: ignore[arg-type]
            llm_name="test_llama",
        )


def test_chat_template_tokens_must_exist_in_the_tokenizer(
    parts: dict[str, object],
) -> None:
    # The Llama 3 template with EuroLLM's tokenizer: no <|start_header_id|>.
    with pytest.raises(IncompatibleComponentsError) as caught:
        SpeechMapperPipeline(
            parts["sfm"],  # type: ignore[arg-type]
            parts["projector"],  # type: ignore[arg-type]
            parts["llama"],  # type: ignore[arg-type]
            parts["eurollm_tokenizer"],  # type: ignore[arg-type]
            llm_name="test_llama",
        )

    assert (
        "The llama3 chat template uses '<|start_header_id|>', which the tokenizer does not have as a single token"
        in str(caught.value)
    )


def test_bad_settings_are_refused(parts: dict[str, object]) -> None:
    common = (
        parts["sfm"],
        parts["projector"],
        parts["llama"],
        parts["llama_tokenizer"],
    )

    with pytest.raises(ValueError, match="must not contain the speech placeholder"):
        SpeechMapperPipeline(*common, llm_name="test_llama", system_prompt="<speech>")  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="`batch_size` must be positive"):
        SpeechMapperPipeline(*common, llm_name="test_llama", batch_size=0)  # type: ignore[arg-type]

    with pytest.raises(ValidationError, match="max_new_tokens"):
        SpeechMapperPipeline(
            *common,  # type: ignore[arg-type]
            llm_name="test_llama",
            generation=GenerationConfig(max_new_tokens=0),
        )

    with pytest.raises(ValidationError, match="`st` must contain {language}"):
        SpeechMapperPipeline(
            *common,  # type: ignore[arg-type]
            llm_name="test_llama",
            prompts=TaskPrompts(st="Translate this.\n<speech>"),
        )
