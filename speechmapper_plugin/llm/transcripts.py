"""How a transcript is written wherever it becomes a training target.

One policy (``target_llm.transcript_normalization``, the same section in both
stages) writes every such transcript: stage 1's MSE targets, stage 2's MSE
targets, and stage 2's CE response when the response is the transcript (ASR
examples, ``response_is_transcript``). Instruction files and manifests keep
the corpus's text; the policy is applied when the targets are built, so the
terms cannot train on different texts of one utterance.

The MSE targets are the LLM's token embeddings of the transcript, so its
casing decides which embeddings the projector learns: LibriSpeech transcripts
are upper-case without punctuation, and Llama's tokens for "THE" and "the" are
different rows. The options:

- ``as_given``: the manifest's text unchanged;
- ``lowercase``: everything lower-cased;
- ``sentence_case``: lower-cased, then the first letter and the pronoun "I"
  (with its contractions) capitalised: the casing of ordinary English text
  without names. It restores no punctuation; a model-based restorer (case and
  punctuation) is not offered here, because it cannot be downloaded offline:
  run one over the manifest and use ``as_given``.
"""

from __future__ import annotations

import re
from typing import Final, Literal, TypeAlias, get_args

TranscriptNormalization: TypeAlias = Literal["as_given", "lowercase", "sentence_case"]

TRANSCRIPT_NORMALIZATIONS: Final = get_args(TranscriptNormalization)

_PRONOUN_I: Final = re.compile(r"\bi(?=$|\s|'(?:m|ll|ve|d)\b)")


def normalize_transcript(text: str, mode: TranscriptNormalization) -> str:
    """``text`` written as ``mode`` says (see the module docstring)."""
    if mode == "as_given":
        return text
    if mode == "lowercase":
        return text.lower()
    if mode == "sentence_case":
        text = _PRONOUN_I.sub("I", text.lower())
        stripped = text.lstrip()
        if not stripped:
            return text
        start = len(text) - len(stripped)
        return text[:start] + stripped[0].upper() + stripped[1:]
    raise ValueError(
        f"Unknown transcript normalization '{mode}'; expected one of {', '.join(TRANSCRIPT_NORMALIZATIONS)}."
    )
