"""One transcript policy for every target: an upper-case LibriSpeech transcript
reaches stage 2's CE response, stage 2's MSE targets and stage 1's targets as
the same text, written as ``target_llm.transcript_normalization`` says.

The path is the user's: the LibriSpeech converter, the ASR instruction builder,
the instruction file, then the stage-2 and stage-1 datasets with the target
tokens both recipes build from that one section. The expected texts are
written by hand.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from recipes.common import TranscriptTargetsSection, load_target_tokens
from speechmapper_plugin.data import read_manifest
from speechmapper_plugin.data.convert import convert_librispeech
from speechmapper_plugin.data.instructions import (
    SpeechRecord,
    build_asr_examples,
    read_instructions,
    write_instructions,
)
from speechmapper_plugin.datasets.instructions import InstructionDataset
from speechmapper_plugin.datasets.speech_features import SpeechFeaturesDataset
from speechmapper_plugin.llm import TranscriptNormalization, chat_template_for_card
from speechmapper_plugin.models.speechmapper import get_speechmapper_model_hub
from tests.support.feature_store import Utterance, write_feature_store
from tests.support.llm import LLAMA_CARD

TRANSCRIPTS = {
    "1089-134686-0000": "HE HOPED THERE WOULD BE STEW FOR DINNER",
    "1089-134686-0001": "I THINK I'LL GO HOME SAID MISTER BROWN",
}

EXPECTED: dict[str, dict[str, str]] = {
    "as_given": TRANSCRIPTS,
    "lowercase": {
        "1089-134686-0000": "he hoped there would be stew for dinner",
        "1089-134686-0001": "i think i'll go home said mister brown",
    },
    "sentence_case": {
        "1089-134686-0000": "He hoped there would be stew for dinner",
        "1089-134686-0001": "I think I'll go home said mister brown",
    },
}


def librispeech_manifest(tmp_path: Path) -> Path:
    """A LibriSpeech ``test-clean`` chapter (audio never decoded here: the
    speech comes from a feature store) converted to a manifest."""
    chapter = tmp_path / "LibriSpeech" / "test-clean" / "1089" / "134686"
    chapter.mkdir(parents=True)
    (chapter / "1089-134686.trans.txt").write_text(
        "".join(f"{uid} {text}\n" for uid, text in TRANSCRIPTS.items())
    )
    for uid in TRANSCRIPTS:
        (chapter / f"{uid}.flac").write_bytes(b"")
    manifest = tmp_path / "test_clean.tsv"
    convert_librispeech(tmp_path / "LibriSpeech", "test-clean", manifest)
    return manifest


@pytest.mark.parametrize("mode", list(EXPECTED))
def test_ce_response_and_mse_targets_are_one_text(
    tmp_path: Path, mode: TranscriptNormalization
) -> None:
    rows = read_manifest(librispeech_manifest(tmp_path)).rows
    assert {r.id: r.transcript for r in rows} == TRANSCRIPTS  # kept as published

    instructions = tmp_path / "asr.jsonl"
    write_instructions(
        instructions,
        build_asr_examples(
            SpeechRecord(id=r.id, transcript=r.transcript, lang=r.lang) for r in rows
        ),
    )
    # The file keeps the corpus's text; the policy is applied when training.
    assert {e.response for e in read_instructions(instructions)} == set(
        TRANSCRIPTS.values()
    )

    store = write_feature_store(
        tmp_path / "store",
        [
            Utterance(
                r.id,
                torch.randn(200, 64, generator=torch.Generator().manual_seed(i)),
                r.transcript,
            )
            for i, r in enumerate(rows)
        ],
    )
    projector = get_speechmapper_model_hub().get_arch_config("tiny")

    # Both recipes build their targets from this one section.
    section = TranscriptTargetsSection(transcript_normalization=mode)
    targets = load_target_tokens(section, LLAMA_CARD)

    stage2 = InstructionDataset({"train": [instructions]}, [store]).prepare(
        "train",
        targets=targets,
        template=chat_template_for_card(LLAMA_CARD),
        projector=projector,
        max_seq_len=4096,
    )
    stage1 = SpeechFeaturesDataset({"train": [store]}).prepare(
        "train", encode=lambda text: targets.encode(text).tolist(), projector=projector
    )

    assert len(stage2.examples) == len(stage1.examples) == len(TRANSCRIPTS)
    for example in stage2.examples:
        uid = example.id.removesuffix(":asr")
        assert example.transcript_ids is not None
        assert targets.decode(example.response_ids) == EXPECTED[mode][uid]
        assert targets.decode(example.transcript_ids) == EXPECTED[mode][uid]
    for s1 in stage1.examples:
        assert targets.decode(s1.token_ids) == EXPECTED[mode][s1.id]
