"""SpeechMapperPipeline: audio in every accepted form -> text, single or batched.

The components are the session's tiny SeamlessM4T-v2 encoder (``test_sm4t_hf``),
a tiny projector trained "for" ``test_llama`` and that LLM, all with random
weights: the answers are gibberish, so the tests check behaviour (types,
batching, prompts, resampling, results) and compare log-probabilities, which
depend on the audio even where the random LLM's argmax does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq2.nn import BatchLayout

from speechmapper_plugin.audio import decode_audio, load_audio
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.generation.config import RepetitionGuardConfig
from speechmapper_plugin.llm import embed_token_ids
from speechmapper_plugin.llm.tokens import create_text_decoder
from speechmapper_plugin.speech_llm import (
    AnswerStream,
    AudioInput,
    AudioInputError,
    PipelineResult,
    SpeechMapperPipeline,
    TaskPrompts,
)
from tests.support.audio import tone, write_wav

GENERATION = GenerationConfig(max_new_tokens=8)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Four 16 kHz files of different lengths and content."""
    root = tmp_path_factory.mktemp("pipeline_audio")
    return [
        write_wav(root / f"a{i}.wav", tone(seconds, freq=freq, seed=i))
        for i, (seconds, freq) in enumerate(
            [(1.2, 180.0), (2.5, 240.0), (0.9, 300.0), (1.7, 140.0)]
        )
    ]


def assert_same_result(actual: PipelineResult, expected: PipelineResult) -> None:
    assert actual.token_ids == expected.token_ids
    assert actual.stop_reason == expected.stop_reason
    assert actual.num_speech_positions == expected.num_speech_positions
    torch.testing.assert_close(
        torch.tensor(actual.generation.best.token_log_probs),
        torch.tensor(expected.generation.best.token_log_probs),
        atol=1e-4,
        rtol=0,
    )


def test_single_inputs_give_text_and_batches_give_lists(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    single = [
        pipeline.transcribe(wavs[0]),
        pipeline.translate(wavs[0], "de"),
        pipeline.answer(wavs[0], "Who saw the dog?"),
        pipeline.generate(wavs[0], "Repeat what was said.\n<speech>"),
    ]
    assert all(isinstance(text, str) for text in single)

    batched = [
        pipeline.transcribe(wavs),
        pipeline.translate(tuple(wavs), "German"),
        pipeline.answer(wavs, ["Who?", "What?", "Where?", "When?"]),
        pipeline.generate(wavs, "Repeat what was said.\n<speech>"),
    ]
    for texts in batched:
        assert isinstance(texts, list) and len(texts) == len(wavs)
        assert all(isinstance(text, str) for text in texts)

    # A batch of one is still a batch.
    assert pipeline.transcribe([wavs[0]]) == [single[0]]


def test_paths_bytes_arrays_and_tensors_are_the_same_audio(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    path = wavs[1]
    waveform = load_audio(path)

    from_path, from_str, from_bytes, from_array, from_tensor = pipeline.run(
        [path, str(path), path.read_bytes(), waveform.numpy(), waveform],
        "Transcribe the audio.\n<speech>",
    )

    for other in (from_str, from_bytes, from_array, from_tensor):
        assert_same_result(other, from_path)


def test_a_batch_equals_one_by_one(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    instructions = [
        "Transcribe the audio.\n<speech>",
        "Repeat what was said.\n<speech>",
        "<speech>\nWrite down what you hear.",
        "Transcribe the audio.\n<speech>",
    ]

    batched = pipeline.run(wavs, instructions, batch_size=3)

    for path, instruction, result in zip(wavs, instructions, batched, strict=True):
        (alone,) = pipeline.run(path, instruction)
        assert result.instruction == instruction
        assert_same_result(result, alone)

    # Different audio changes what the LLM sees (its log-probabilities).
    first, second = batched[0].generation.best, batched[3].generation.best
    assert first.token_log_probs != second.token_log_probs


def test_results_record_how_generation_ended(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    results = pipeline.run(wavs, "Transcribe the audio.\n<speech>")

    for path, result in zip(wavs, results, strict=True):
        assert len(result.token_ids) <= GENERATION.max_new_tokens
        # The count the pipeline predicts before running is what the projector gave.
        num_samples = load_audio(path).numel()
        assert result.num_speech_positions == pipeline.check_audio(
            num_samples, result.instruction
        )
        assert result.prompt_len == (
            len(result.prompt.prefix_ids)
            + result.num_speech_positions
            + len(result.prompt.suffix_ids)
        )
        decoded = pipeline.tokenizer.create_decoder(skip_special_tokens=True)
        assert result.text == decoded(torch.tensor(result.token_ids)).strip()


def test_stop_reasons_follow_the_generation_config(wavs: list[Path]) -> None:
    # Stop tokens blocked for the whole budget and no guard: every answer
    # must end at its length limit.
    forced = SpeechMapperPipeline.from_cards(
        "test_sm4t_hf",
        "test_projector_llama",
        "test_llama",
        device="cpu",
        generation=GenerationConfig(
            max_new_tokens=4,
            min_gen_len=5,
            repetition_guard=RepetitionGuardConfig(enabled=False),
        ),
    )
    results = forced.run(wavs, "Transcribe the audio.\n<speech>")
    assert [r.stop_reason for r in results] == ["max_length"] * len(wavs)
    assert all(r.max_length_reached and len(r.token_ids) == 4 for r in results)


@pytest.fixture
def llm_inputs(pipeline: SpeechMapperPipeline) -> Iterator[list[torch.Tensor]]:
    """The embeddings the LLM's decoder receives on its first (prefill) call."""
    seen: list[torch.Tensor] = []

    def hook(module: torch.nn.Module, args: tuple[object, ...]) -> None:
        embeds = args[0]
        assert isinstance(embeds, torch.Tensor)
        seen.append(embeds.detach().clone())

    handle = pipeline.llm.decoder.register_forward_pre_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


def prefix_embeds(pipeline: SpeechMapperPipeline, instruction: str) -> torch.Tensor:
    ids = pipeline.encode_prompt(instruction).prefix_ids
    with torch.inference_mode():
        return embed_token_ids(pipeline.llm, torch.tensor(ids))


@pytest.mark.parametrize(
    ("call", "instruction"),
    [
        ("transcribe", TaskPrompts().asr),
        ("translate", "Translate the audio into German.\n<speech>"),
        (
            "answer",
            "Listen to the audio and answer the question.\n<speech>\nQuestion: Who saw the dog?",
        ),
        ("generate", "Repeat what was said.\n<speech>"),
    ],
)
def test_each_task_sends_its_instruction_to_the_llm(
    pipeline: SpeechMapperPipeline,
    wavs: list[Path],
    llm_inputs: list[torch.Tensor],
    call: str,
    instruction: str,
) -> None:
    args = {
        "transcribe": (),
        "translate": ("de",),
        "answer": ("Who saw the dog?",),
        "generate": ("Repeat what was said.\n<speech>",),
    }[call]

    getattr(pipeline, call)(wavs[0], *args)

    expected = prefix_embeds(pipeline, instruction)
    prefill = llm_inputs[0][0]
    torch.testing.assert_close(prefill[: expected.size(0)], expected)

    # The rendered prompt holds the instruction around the speech.
    prompt = pipeline.encode_prompt(instruction)
    before, after = instruction.split("<speech>")
    assert before.strip() in prompt.text.split("<speech>")[0]
    assert after.strip() in prompt.text.split("<speech>")[1]


def test_the_prefill_is_prefix_speech_suffix(
    pipeline: SpeechMapperPipeline, wavs: list[Path], llm_inputs: list[torch.Tensor]
) -> None:
    instruction = "Repeat what was said.\n<speech>"
    (result,) = pipeline.run(wavs[1], instruction)

    waveform = load_audio(wavs[1])
    with torch.inference_mode():
        features, lens = pipeline.extractor([waveform])
        speech, _ = pipeline.projector(
            features, BatchLayout.of(features, lens.tolist())
        )
        suffix = embed_token_ids(pipeline.llm, torch.tensor(result.prompt.suffix_ids))

    prefill = llm_inputs[0][0]
    num_prefix = len(result.prompt.prefix_ids)
    speech_part = prefill[num_prefix : num_prefix + result.num_speech_positions]
    torch.testing.assert_close(speech_part, speech[0])
    torch.testing.assert_close(
        prefill[num_prefix + result.num_speech_positions :][: suffix.size(0)], suffix
    )


def test_the_system_prompt_reaches_the_prompt(wavs: list[Path]) -> None:
    with_system = SpeechMapperPipeline.from_cards(
        "test_sm4t_hf",
        "test_projector_llama",
        "test_llama",
        device="cpu",
        generation=GENERATION,
        system_prompt="You are a helpful assistant.",
    )
    (result,) = with_system.run(wavs[0], "Transcribe the audio.\n<speech>")
    assert result.prompt.text.startswith(
        "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant."
    )


def test_arrays_at_other_rates_are_resampled(
    pipeline: SpeechMapperPipeline, tmp_path: Path
) -> None:
    file_8k = write_wav(tmp_path / "8k.wav", tone(2.0, 8_000, freq=200.0), 8_000)
    at_8k = decode_audio(file_8k).waveform[:, 0].numpy()  # the file's samples
    instruction = "Transcribe the audio.\n<speech>"

    (resampled,) = pipeline.run(at_8k, instruction, sample_rate=8_000)
    (from_file,) = pipeline.run(file_8k, instruction)
    (misread,) = pipeline.run(at_8k, instruction)

    # Declared as 8 kHz: the same audio as the 8 kHz file, resampled to 16 kHz.
    assert_same_result(resampled, from_file)
    assert resampled.num_speech_positions == pipeline.check_audio(32_000, instruction)

    # Taken as 16 kHz it is half as long: fewer speech positions.
    assert misread.num_speech_positions == pipeline.check_audio(16_000, instruction)
    assert misread.num_speech_positions < resampled.num_speech_positions


def test_pre_averaged_features_give_the_waveform_answer(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    """A feature store holds features averaged 2:1 by the extractor; fed with
    ``pre_averaged=True`` they must reproduce the waveform path."""
    from speechmapper_plugin.models.sm4t_speech_encoder import SpeechFeatureExtractor

    waveforms = [load_audio(p) for p in wavs[:2]]
    instruction = "Transcribe the audio.\n<speech>"

    averaging = SpeechFeatureExtractor(
        pipeline.extractor.model,
        frame_averaging=pipeline.projector.config.frame_averaging,
    )
    features, lens = averaging(waveforms)
    stored = [features[i, : lens[i]].to(torch.float16) for i in range(2)]

    from_features = pipeline.run(stored, instruction, features=True)
    from_audio = pipeline.run(waveforms, instruction)

    for actual, expected in zip(from_features, from_audio, strict=True):
        assert actual.num_speech_positions == expected.num_speech_positions
        assert actual.token_ids == expected.token_ids


def test_models_are_in_eval_mode_and_left_untrained(
    pipeline: SpeechMapperPipeline,
) -> None:
    assert not pipeline.llm.training
    assert not pipeline.projector.training
    assert not pipeline.extractor.model.training
    assert pipeline.device == torch.device("cpu")
    assert np.isclose(pipeline.min_num_samples / 16_000, 0.655)


def test_a_bfloat16_projector_and_llm_run(wavs: list[Path]) -> None:
    """The GPU setting (bf16 LLM and projector, fp32 speech encoder) on CPU."""
    bf16 = SpeechMapperPipeline.from_cards(
        "test_sm4t_hf",
        "test_projector_llama",
        "test_llama",
        device="cpu",
        dtype=torch.bfloat16,
        generation=GENERATION,
    )
    assert next(bf16.llm.parameters()).dtype == torch.bfloat16
    assert next(bf16.projector.parameters()).dtype == torch.bfloat16
    assert next(bf16.extractor.model.parameters()).dtype == torch.float32

    texts = bf16.transcribe(wavs[:2])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_with_options_shares_the_models_and_changes_only_settings(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    system = "You are a careful transcriber."
    longer = GenerationConfig(max_new_tokens=3)
    variant = pipeline.with_options(generation=longer, system_prompt=system)

    # The same module objects: nothing was reloaded or copied.
    assert variant.llm is pipeline.llm
    assert variant.projector is pipeline.projector
    assert variant.extractor is pipeline.extractor
    assert variant.tokenizer is pipeline.tokenizer
    # The original keeps its settings.
    assert pipeline.generation is GENERATION
    assert pipeline.system_prompt is None

    instruction = "Repeat.\n<speech>"
    # Its prompts carry its system prompt, the original's do not (a control).
    assert len(variant.encode_prompt(instruction).prefix_ids) > len(
        pipeline.encode_prompt(instruction).prefix_ids
    )
    # Its generation settings apply: at most 3 new tokens.
    assert len(variant.run(wavs[0], instruction)[0].token_ids) <= 3

    kept = pipeline.with_options()
    assert kept.generation is pipeline.generation
    assert kept.system_prompt == pipeline.system_prompt

    with pytest.raises(ValueError, match="<speech>"):
        pipeline.with_options(system_prompt="Say <speech>")


def test_the_prompt_cache_stays_within_its_bound() -> None:
    small = SpeechMapperPipeline.from_cards(
        "test_sm4t_hf",
        "test_projector_llama",
        "test_llama",
        device="cpu",
        generation=GENERATION,
        prompt_cache_size=3,
    )
    instructions = [f"Instruction {i}.\n<speech>" for i in range(10)]
    for instruction in instructions:
        small.encode_prompt(instruction)
        assert small.cached_prompts <= 3
    assert small.cached_prompts == 3

    # Least recently used goes first: touching the oldest kept one keeps it.
    first = small.encode_prompt(instructions[7])
    small.encode_prompt("Another.\n<speech>")
    assert small.encode_prompt(instructions[7]) is first
    assert small.cached_prompts == 3

    with pytest.raises(ValueError, match="prompt_cache_size"):
        SpeechMapperPipeline.from_cards(
            "test_sm4t_hf",
            "test_projector_llama",
            "test_llama",
            device="cpu",
            prompt_cache_size=0,
        )


def test_text_deltas_never_split_a_character(pipeline: SpeechMapperPipeline) -> None:
    """Tokens of text with multi-byte characters (some split over byte
    tokens) given one at a time: no piece holds half a character, and the
    pieces join to the decoded text."""
    text = " Grüße, 𝄞 und 日本語: ça va?"
    ids = pipeline.tokenizer.create_raw_encoder()(text).tolist()
    decoder = create_text_decoder(pipeline.tokenizer)
    partial = [decoder(torch.tensor(ids[:n])) for n in range(1, len(ids) + 1)]
    assert any("\ufffd" in p for p in partial)  # a character over several tokens

    deltas = pipeline.text_deltas()
    pieces = [deltas.push(token) for token in ids]

    assert "".join(pieces) == text.strip()
    assert not any("\ufffd" in piece for piece in pieces)
    assert "" in pieces and deltas.finish(text.strip()) == ""


def test_stream_gives_the_answer_piece_by_piece(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    instruction = "Repeat what was said.\n<speech>"
    (expected,) = pipeline.run(wavs[1], instruction)

    stream = pipeline.stream(wavs[1], instruction)
    assert isinstance(stream, AnswerStream)  # exported with the pipeline
    pieces = list(stream)

    assert "".join(pieces) == expected.text
    assert len(pieces) >= min(2, len(expected.token_ids))
    assert stream.result is not None
    assert_same_result(stream.result, expected)

    # Beam search knows its tokens only at the end: one piece, the answer.
    beam = pipeline.with_options(generation=GenerationConfig(beam_size=2))
    with beam.stream(wavs[1], instruction) as beamed:
        assert list(beamed) == [beam.generate(wavs[1], instruction)]


def test_closing_a_stream_stops_generating(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    """Closed before its answer of 200 tokens (no stop token allowed before)
    is done, the generation stops; an answer read to its end is not stopped."""
    long = pipeline.with_options(
        generation=GenerationConfig(
            max_new_tokens=200,
            min_gen_len=201,
            repetition_guard=RepetitionGuardConfig(enabled=False),
        )
    )
    with long.stream(wavs[0], "Repeat what was said.\n<speech>") as stream:
        next(stream)
    # `stopped`: the generation itself ended cancelled, not at its 200 tokens.
    assert stream.stopped and stream.result is None and list(stream) == []

    # Beam search never asks whether it was closed: it ends, not stopped.
    beam = long.with_options(
        generation=GenerationConfig(beam_size=2, max_new_tokens=4, min_gen_len=5)
    )
    with beam.stream(wavs[0], "Repeat what was said.\n<speech>") as beamed:
        pass
    assert not beamed.stopped and beamed.result is None

    with pipeline.stream(wavs[0], "Repeat what was said.\n<speech>") as whole:
        assert "".join(whole) == pipeline.generate(
            wavs[0], "Repeat what was said.\n<speech>"
        )
    assert not whole.stopped and whole.result is not None


def test_stream_refuses_bad_input_before_any_model_runs(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    with pytest.raises(AudioInputError, match="gives no speech frames"):
        pipeline.stream(np.zeros(800, dtype=np.float32), "Say it.\n<speech>")
    with pytest.raises(ValueError, match="<speech>"):
        pipeline.stream(wavs[0], "No placeholder")


def test_run_reports_each_steps_tokens_by_input(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    """Batches are formed longest first; the callback's indices are still
    the inputs' (in input order), and its tokens each input's answer."""
    steps: list[dict[int, int]] = []
    results = pipeline.run(
        list[AudioInput](wavs),
        "Repeat what was said.\n<speech>",
        on_tokens=steps.append,
        batch_size=3,
    )

    streamed: dict[int, list[int]] = {i: [] for i in range(len(wavs))}
    for step in steps:
        for index, token in step.items():
            streamed[index].append(token)
    assert [streamed[i] for i in range(len(wavs))] == [r.token_ids for r in results]
    assert max(len(step) for step in steps) > 1  # batched steps


def test_run_asks_cancelled_by_input_index(
    pipeline: SpeechMapperPipeline, wavs: list[Path]
) -> None:
    """Input 3 is the last example of the first batch (inputs 1, 3, 0,
    longest first, decoded in input order): cancelled from the start, it
    stops after the first step with that step's token and
    ``stop_reason="cancelled"``; the others are answered as without it."""
    instruction = "Repeat what was said.\n<speech>"
    expected = pipeline.run(list[AudioInput](wavs), instruction, batch_size=3)
    results = pipeline.run(
        list[AudioInput](wavs),
        instruction,
        batch_size=3,
        cancelled=lambda index: index == 3,
    )

    assert results[3].stop_reason == "cancelled"
    assert results[3].token_ids == expected[3].token_ids[:1]
    assert len(expected[3].token_ids) > 1  # control: it had more to say
    for i in (0, 1, 2):
        assert_same_result(results[i], expected[i])
