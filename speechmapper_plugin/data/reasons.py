"""Why a manifest row or an example is unusable: one short code per cause.

The codes are the reason column of every report (``validate_manifest``'s
TSV, a feature store's ``errors.tsv``, a dataset's or the generate recipe's
``skipped.tsv``) and what their summaries count, so users can count and grep
them; the accompanying detail says what exactly was wrong.
"""

from __future__ import annotations

from typing import Final

MALFORMED_ROW: Final = "malformed_row"
"""The row cannot be parsed: wrong column count, bad JSON, bad number, missing field."""

DUPLICATE_ID: Final = "duplicate_id"
"""An earlier row has the same id; the first occurrence is kept."""

EMPTY_TRANSCRIPT: Final = "empty_transcript"
"""The transcript is empty or only whitespace; stage 1 has nothing to learn from it."""

MISSING_FILE: Final = "missing_file"
"""The audio file does not exist."""

MISSING_TRANSCRIPT: Final = "missing_transcript"
"""A corpus's audio file that no transcript names (a LibriSpeech chapter
without its ``trans.txt``, or an utterance that file does not list)."""

UNREADABLE_FILE: Final = "unreadable_file"
"""The audio file exists but cannot be read (permissions, I/O error, a directory)."""

EMPTY_AUDIO: Final = "empty_audio"
"""The audio has zero length (an empty file, or zero samples declared)."""

UNDECODABLE_AUDIO: Final = "undecodable_audio"
"""The file is not audio libsndfile can decode (corrupt, truncated, unknown format)."""

INVALID_AUDIO: Final = "invalid_audio"
"""The audio decodes but holds NaN/inf samples or has an unusable shape."""

TOO_SHORT_AUDIO: Final = "too_short_audio"
"""The audio is too short for the speech encoder and the projector to produce
one speech embedding."""

TOO_LONG_AUDIO: Final = "too_long_audio"
"""The audio has more frames than the projector's ``max_input_frames``."""

LENGTH_MISMATCH: Final = "length_mismatch"
"""The declared number of samples or duration disagrees with the decoded audio."""

BAD_SEGMENT: Final = "bad_segment"
"""A segment row (``offset`` + ``duration``) that does not lie inside its file:
negative offset or duration, zero duration, or it starts or ends after the end."""

NON_FINITE_FEATURES: Final = "non_finite_features"
"""The encoder's features hold NaN/inf (in the storage dtype, e.g. fp16 overflow)."""

MISSING_FEATURES: Final = "missing_features"
"""A ``speech`` id that no feature store holds."""

EMPTY_RESPONSE: Final = "empty_response"
"""An instruction example whose response is empty; stage 2 has no CE target."""

TRANSCRIPT_TOO_LONG: Final = "transcript_too_long"
"""The transcript has more tokens than the projector emits speech embeddings
(a stage-1 target is padded, never truncated)."""

TOO_LONG_FOR_BATCH: Final = "too_long_for_batch"
"""The utterance has more frames than a batch may hold (``max_num_frames``)."""

TOO_LONG_FOR_LLM: Final = "too_long_for_llm"
"""The prompt with its speech embeddings (and, in training, the response)
does not fit the LLM's ``max_seq_len`` (in generation: with room for one
new token)."""
