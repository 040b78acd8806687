"""Is this example usable? The one check, shared by training, inference and generation.

An utterance of ``num_frames`` speech-encoder frames becomes ``positions``
speech embeddings (the projector's output length; an upper bound for
variable-length adapters). It is usable when that gives at least one position
and no more frames than the projector (and, in training, a batch) takes; its
transcript fits when it has 1 to ``positions`` tokens (stage-1 targets are
padded, never truncated); its prompt fits when the LLM's context holds it,
with its response in training or with room for one new token in generation.
Values fed to a model must be finite, and a feature store must hold what the
projector reads (width, frame averaging, and the encoder, layer and LayerNorm
it was trained on).

Each check answers with an :class:`Unusable` (a reason code of
:mod:`speechmapper_plugin.data.reasons` and a detail for humans) rather than
raising, so that datasets and the generate recipe count and skip, and the
inference pipeline raises its own errors from the same text. The placeholder
check of instructions is
:func:`speechmapper_plugin.llm.speech_prompt.placeholder_problem`, next to
the placeholder itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from speechmapper_plugin.audio import SAMPLE_RATE
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.manifest import BadRow
from speechmapper_plugin.data.reasons import (
    EMPTY_TRANSCRIPT,
    TOO_LONG_AUDIO,
    TOO_LONG_FOR_BATCH,
    TOO_LONG_FOR_LLM,
    TOO_SHORT_AUDIO,
    TRANSCRIPT_TOO_LONG,
)
from speechmapper_plugin.input_checks import sequence_fits
from speechmapper_plugin.models.adapters import ProjectorConfig
from speechmapper_plugin.models.projector_base import SpeechFeaturesConfig

ENCODER_FRAME_RATE = 50
"""Speech-encoder frames per second (SeamlessM4T-v2 and Whisper), for messages."""


@dataclass(frozen=True)
class Unusable:
    """Why an example cannot be used."""

    reason: str
    """One of the codes in :mod:`speechmapper_plugin.data.reasons`."""

    detail: str
    """What exactly is wrong, for humans (no trailing period)."""

    def bad_row(self, line_no: int, id: str | None) -> BadRow:
        """The row-level record of this problem (for ``skipped.tsv``/``errors.tsv``)."""
        return BadRow(line_no, id, self.reason, self.detail)


def audio_length_problem(
    num_samples: int, min_num_samples: int, *, gives: str, needed_by: str
) -> Unusable | None:
    """Whether ``num_samples`` of 16 kHz audio reach ``min_num_samples``.

    :param gives: What too short audio gives, e.g. "no speech-encoder frame".
    :param needed_by: Who needs ``min_num_samples``, e.g. "the speech encoder needs".
    """
    if num_samples >= min_num_samples:
        return None

    return Unusable(
        TOO_SHORT_AUDIO,
        f"{num_samples / SAMPLE_RATE:.3f} s of audio gives {gives}: {needed_by} at least {min_num_samples / SAMPLE_RATE:.3f} s ({min_num_samples} samples at 16 kHz)",
    )


def speech_positions(
    projector: ProjectorConfig,
    num_frames: int,
    *,
    pre_averaged: bool,
    max_num_frames: int | None = None,
) -> int | Unusable:
    """The number of speech embeddings ``num_frames`` frames give, or why none.

    :param pre_averaged: The frames are already averaged
        ``projector.frame_averaging``:1 (feature stores hold such frames).
    :param max_num_frames: The longest utterance a batch may hold, in the same
        frames as ``num_frames`` (training only).
    """
    positions = projector.max_output_length(num_frames, pre_averaged=pre_averaged)
    if positions < 1:
        shortest = projector.min_input_frames(pre_averaged=pre_averaged)
        return Unusable(
            TOO_SHORT_AUDIO,
            f"{num_frames} speech-encoder frames give no speech embedding: the projector needs at least {shortest}",
        )

    encoder_frames = (
        num_frames * projector.frame_averaging if pre_averaged else num_frames
    )
    if encoder_frames > projector.max_input_frames:
        return Unusable(
            TOO_LONG_AUDIO,
            f"{encoder_frames} speech-encoder frames ({encoder_frames / ENCODER_FRAME_RATE:.0f} s at {ENCODER_FRAME_RATE} Hz) exceed the projector's `max_input_frames` ({projector.max_input_frames}); split the audio",
        )

    too_long = batch_problem(num_frames, max_num_frames)

    return positions if too_long is None else too_long


def batch_problem(num_frames: int, max_num_frames: int | None) -> Unusable | None:
    """Whether an utterance fits batches of ``max_num_frames`` frames (``None``: any)."""
    if max_num_frames is None or num_frames <= max_num_frames:
        return None

    return Unusable(
        TOO_LONG_FOR_BATCH,
        f"too long for a batch: {num_frames} frames > max_num_frames {max_num_frames}",
    )


def transcript_text_problem(text: str) -> Unusable | None:
    """Whether a transcript has text (an empty one gives stage 1 nothing to learn)."""
    if text.strip():
        return None

    return Unusable(EMPTY_TRANSCRIPT, "the transcript is empty")


def transcript_problem(num_tokens: int, positions: int) -> Unusable | None:
    """Whether a transcript of ``num_tokens`` tokens can be the MSE target of
    ``positions`` speech embeddings (it is padded, never truncated)."""
    if num_tokens < 1:
        return Unusable(EMPTY_TRANSCRIPT, "the transcript has no tokens")

    if num_tokens > positions:
        return Unusable(
            TRANSCRIPT_TOO_LONG,
            f"transcript longer than projector output: {num_tokens} tokens > {positions} positions",
        )

    return None


def prompt_problem(
    projector: ProjectorConfig,
    prefix_len: int,
    positions: int,
    suffix_len: int,
    max_seq_len: int,
    *,
    response_len: int | None = None,
) -> Unusable | None:
    """Whether ``prefix ++ speech ++ suffix [++ response]`` fits the LLM (see
    :func:`sequence_fits`); ``positions`` is an upper bound for the
    variable-length adapters (``cif``, ``ctc_compression``), which the
    message says."""
    prompt_len = prefix_len + positions + suffix_len
    if sequence_fits(prompt_len, max_seq_len, response_len=response_len):
        return None

    speech = (
        f"up to {positions} speech embeddings"
        if projector.variable_length
        else f"{positions} speech embeddings"
    )

    if response_len is None:
        return Unusable(
            TOO_LONG_FOR_LLM,
            f"the prompt would take {prompt_len} positions ({speech}), leaving no room to generate within the LLM's {max_seq_len}; split the audio",
        )

    return Unusable(
        TOO_LONG_FOR_LLM,
        f"too long for the LLM: {prompt_len + response_len} positions ({speech}, {response_len} response tokens) > max_seq_len {max_seq_len}",
    )


def store_speech_features(store: FeatureStore) -> SpeechFeaturesConfig:
    """The speech-encoder features a store holds, as a projector records them."""
    meta = store.metadata
    return SpeechFeaturesConfig(
        encoder=meta.encoder, layer=meta.layer, layer_norm=meta.layer_norm
    )


def feature_store_problem(
    store: FeatureStore, projector: ProjectorConfig
) -> str | None:
    """Why a store's features cannot feed ``projector``: width, frame
    averaging, or another encoder, layer or LayerNorm than the projector's
    ``speech_features`` record."""
    meta = store.metadata
    if meta.dim != projector.input_dim:
        return f"The feature store {store.path} holds {meta.dim}-d features, but the projector expects `input_dim` {projector.input_dim}."

    if meta.frame_averaging != projector.frame_averaging:
        return f"The feature store {store.path} averaged frames {meta.frame_averaging}:1, but the projector's `frame_averaging` is {projector.frame_averaging}; extract the features again with `features.frame_averaging={projector.frame_averaging}`, or set `model.config_overrides.frame_averaging`."

    trained = projector.speech_features
    if trained is not None:
        differences = trained.differences(store_speech_features(store))
        if differences:
            return f"The feature store {store.path} holds features of {', '.join(differences)}: the projector was trained on {trained.describe()}. Extract the features again with `model.name={trained.encoder} features.layer={trained.layer} features.layer_norm={str(trained.layer_norm).lower()}`, or use a projector trained on these features."

    return None
