"""The stage-2 dataset: every unusable example is counted under its reason code.

Lengths are checked against references computed here: the projector's own
output length and the prompt/response ids the LLM would see.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from fairseq2.data.tokenizers import load_tokenizer

from speechmapper_plugin.data.instructions import (
    InstructionExample,
    write_instructions,
)
from speechmapper_plugin.data.reasons import (
    EMPTY_RESPONSE,
    MISSING_FEATURES,
    TOO_LONG_FOR_BATCH,
    TOO_LONG_FOR_LLM,
    TOO_SHORT_AUDIO,
)
from speechmapper_plugin.datasets.instructions import (
    InstructionDataset,
    PreparedInstruction,
    PreparedInstructions,
    collate_instructions,
)
from speechmapper_plugin.llm import (
    TranscriptNormalization,
    chat_template_for_card,
    encode_response,
    encode_speech_prompt,
    resolve_target_tokens,
)
from speechmapper_plugin.models.speechmapper import get_speechmapper_model_hub
from tests.support.feature_store import Utterance, write_feature_store
from tests.support.llm import LLAMA_CARD

INSTRUCTION = "Transcribe the audio.\n<speech>"


def features(frames: int, seed: int) -> torch.Tensor:
    return torch.randn(frames, 64, generator=torch.Generator().manual_seed(seed))


def test_prepare_counts_every_skip_by_code(tmp_path: Path) -> None:
    targets = resolve_target_tokens(LLAMA_CARD)
    tokenizer = load_tokenizer(LLAMA_CARD)
    template = chat_template_for_card(LLAMA_CARD)
    projector = get_speechmapper_model_hub().get_arch_config("tiny")
    encoder = tokenizer.create_raw_encoder()

    def encode(text: str) -> list[int]:
        return [int(i) for i in encoder(text).tolist()]

    store = write_feature_store(
        tmp_path / "store",
        [
            Utterance("u_ok", features(80, 0), "The dog."),
            Utterance("u_dense", features(20, 1), "The old dog saw a bird."),
            Utterance("u_short", features(10, 2), "The dog."),
            Utterance("u_long", features(400, 3), "The dog."),
        ],
    )

    answer = "The dog."
    long_answer = "The old dog saw a bird near the river today. " * 3
    examples = [
        InstructionExample("ok", INSTRUCTION, answer, speech="u_ok", transcript="The dog."),
        InstructionExample("dense", INSTRUCTION, answer, speech="u_dense", transcript="The old dog saw a bird."),
        InstructionExample("missing", INSTRUCTION, answer, speech="nowhere"),
        InstructionExample("silent", INSTRUCTION, "  ", speech="u_ok"),
        InstructionExample("short", INSTRUCTION, answer, speech="u_short"),
        InstructionExample("long", INSTRUCTION, answer, speech="u_long"),
        InstructionExample("wordy", INSTRUCTION, long_answer, speech="u_ok"),
    ]  # fmt: skip
    path = tmp_path / "train.jsonl"
    write_instructions(path, examples)

    # The reference: "ok" fills the context exactly.
    prompt = encode_speech_prompt(tokenizer, template, INSTRUCTION)
    ok_len = (
        len(prompt.prefix_ids)
        + projector.max_output_length(80, pre_averaged=True)
        + len(prompt.suffix_ids)
        + len(encode_response(tokenizer, template, answer))
    )

    def prepare(
        max_seq_len: int, max_num_frames: int | None = 300
    ) -> PreparedInstructions:
        return InstructionDataset({"train": [path]}, [store]).prepare(
            "train",
            targets=targets,
            template=template,
            projector=projector,
            max_seq_len=max_seq_len,
            max_num_frames=max_num_frames,
        )

    prepared = prepare(ok_len)

    assert [e.id for e in prepared.examples] == ["ok", "dense"]
    ok, dense = prepared.examples
    assert ok.transcript_ids == tuple(encode("The dog."))
    # 20 frames give fewer positions than the transcript has tokens: no MSE term.
    assert len(encode("The old dog saw a bird.")) > projector.max_output_length(
        20, pre_averaged=True
    )
    assert dense.transcript_ids is None and prepared.num_without_mse == 1

    reasons = {b.id: b.reason for b in prepared.report.skipped}
    assert reasons == {
        "missing": MISSING_FEATURES,
        "silent": EMPTY_RESPONSE,
        "short": TOO_SHORT_AUDIO,
        "long": TOO_LONG_FOR_BATCH,
        "wordy": TOO_LONG_FOR_LLM,
    }
    details = {b.id: b.detail for b in prepared.report.skipped}
    assert "'nowhere' is in no feature store" in details["missing"]
    assert f"> max_seq_len {ok_len}" in details["wordy"]
    assert prepared.report.num_examples == 7 and prepared.report.num_kept == 2

    # One position less and "ok" no longer fits.
    tighter = prepare(ok_len - 1)
    assert [e.id for e in tighter.examples] == ["dense"]
    assert tighter.report.counts()[TOO_LONG_FOR_LLM] == 2

    with pytest.raises(ValueError, match="No usable example in split 'train'"):
        prepare(8, max_num_frames=None)


def test_select_equals_collating_the_kept_rows() -> None:
    examples = [
        PreparedInstruction(
            id=f"e{i}",
            task="asr",
            store_index=0,
            entry_index=i,
            num_frames=n,
            prefix_ids=(1, i),
            suffix_ids=(2,),
            response_ids=(3, 4, i),
            transcript_ids=None if i == 1 else (5, i),
        )
        for i, n in enumerate([6, 11, 8])
    ]
    items = [
        {"features": features(e.num_frames, i), "example": e}
        for i, e in enumerate(examples)
    ]
    batch = collate_instructions(items)
    for mask in ([True, False, True], [False, True, False]):
        got = batch.select(torch.tensor(mask))
        want = collate_instructions([i for i, m in zip(items, mask, strict=True) if m])
        assert torch.equal(got.features, want.features)
        assert torch.equal(got.feature_lens, want.feature_lens)
        assert torch.equal(got.target_ids, want.target_ids)
        assert torch.equal(got.target_lens, want.target_lens)
        for name in ("prefix_ids", "suffix_ids", "response_ids", "ids"):
            assert getattr(got, name) == getattr(want, name), name


def prepare_one(
    tmp_path: Path, example: InstructionExample, mode: TranscriptNormalization
) -> PreparedInstructions:
    """``example`` (speech ``u``) prepared with the test Llama's target tokens
    under transcript policy ``mode``."""
    store = write_feature_store(
        tmp_path / "store", [Utterance("u", features(200, 0), "HELLO THERE")]
    )
    path = tmp_path / "train.jsonl"
    write_instructions(path, [example])
    return InstructionDataset({"train": [path]}, [store]).prepare(
        "train",
        targets=resolve_target_tokens(LLAMA_CARD, normalization=mode),
        template=chat_template_for_card(LLAMA_CARD),
        projector=get_speechmapper_model_hub().get_arch_config("tiny"),
        max_seq_len=4096,
    )


def test_a_response_that_is_the_transcript_follows_the_policy(tmp_path: Path) -> None:
    example = InstructionExample(
        "e", INSTRUCTION, speech="u", task="asr", transcript="HELLO THERE",
        response_is_transcript=True,
    )  # fmt: skip
    (prepared,) = prepare_one(tmp_path, example, "lowercase").examples
    targets = resolve_target_tokens(LLAMA_CARD)
    want = encode_response(
        targets.tokenizer, chat_template_for_card(LLAMA_CARD), "hello there"
    )
    assert prepared.response_ids == want
    assert targets.decode(prepared.transcript_ids or ()) == "hello there"


def test_another_response_is_used_as_written(tmp_path: Path) -> None:
    # A translation, or an ASR example that says its response is another text.
    for task, flag in (("st", None), ("asr", False)):
        example = InstructionExample(
            "e", INSTRUCTION, "Hallo da", speech="u", task=task,
            transcript="HELLO THERE", response_is_transcript=flag,
        )  # fmt: skip
        (prepared,) = prepare_one(tmp_path / task, example, "lowercase").examples
        targets = resolve_target_tokens(LLAMA_CARD)
        template = chat_template_for_card(LLAMA_CARD)
        assert prepared.response_ids == encode_response(
            targets.tokenizer, template, "Hallo da"
        )
        assert targets.decode(prepared.transcript_ids or ()) == "hello there"


def test_an_asr_example_that_does_not_say_is_refused_when_the_policy_rewrites(
    tmp_path: Path,
) -> None:
    example = InstructionExample(
        "old", INSTRUCTION, "HELLO THERE", speech="u", task="asr",
        transcript="HELLO THERE",
    )  # fmt: skip
    with pytest.raises(
        ValueError,
        match=r"'old' does not say whether .*`\"response_is_transcript\": true`",
    ):
        prepare_one(tmp_path / "a", example, "sentence_case")
    # Under `as_given` both readings are one text: nothing to refuse.
    (prepared,) = prepare_one(tmp_path / "b", example, "as_given").examples
    targets = resolve_target_tokens(LLAMA_CARD)
    assert targets.decode(prepared.response_ids) == "HELLO THERE"
