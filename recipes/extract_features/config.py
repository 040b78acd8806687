"""Configuration of the feature-extraction recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fairseq2.recipe.config import DatasetSection, ReferenceModelSection
from fairseq2.utils.validation import ValidationResult

from recipes.common import InferenceRunSections, check_read_options
from speechmapper_plugin.data.feature_store import STORAGE_DTYPES
from speechmapper_plugin.datasets.audio_manifest import AUDIO_MANIFEST_DATASET
from speechmapper_plugin.datasets.waveform_reader import WaveformReadOptions
from speechmapper_plugin.validation import check_positive_fields

DEFAULT_ENCODER_CARD = "seamless_m4t_v2_large_speech_encoder"


@dataclass(kw_only=True)
class ExtractFeaturesDatasetSection(DatasetSection, WaveformReadOptions):
    """The manifest to extract (``config_overrides.manifests``) and how the
    audio reader batches it (its options and defaults: lower
    ``max_num_samples`` if the encoder runs out of memory)."""

    split: str = "train"
    """The split (key of ``config_overrides.manifests``) to extract."""

    sort_by_length: bool = True
    """Within a shard, batch the longest utterances first (when the manifest
    declares lengths): less padding, and memory peaks at the start."""

    def validate(self) -> ValidationResult:
        result = super().validate()
        check_read_options(result, self, "dataset.")
        return result


@dataclass(kw_only=True)
class FeaturesSection:
    """Which features to take from the speech encoder."""

    layer: int = 24
    """1-based encoder layer (SpeechMapper: 24, the last)."""

    layer_norm: bool = True
    """Apply the encoder's final LayerNorm to that layer (Hugging Face's
    ``hidden_states[24]``); ``false`` stores the raw block output."""

    frame_averaging: int = 2
    """Average this many consecutive encoder frames (2: 50 Hz -> 25 Hz, as
    SpeechMapper's projector expects; both SeamlessM4T and Whisper are 50 Hz)."""

    max_windows: int = 16
    """Whisper only: 30-second windows encoded at once (long utterances are
    cut into several). Ignored for SeamlessM4T."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        if self.layer < 1:
            result.add_error(
                f"`features.layer` is 1-based and must be positive, but is {self.layer}."
            )
        check_positive_fields(
            result, self, ("frame_averaging", "max_windows"), section="features."
        )
        return result


@dataclass(kw_only=True)
class StoreSection:
    """Where and how the features are stored."""

    path: Path | None = None
    """The store directory; default: ``OUT_DIR/features``. Rerunning with the
    same directory resumes: finished shards are skipped."""

    dtype: str = "float16"
    """Storage dtype: ``float16`` (more precise; values beyond ±65504 overflow
    and such rows are skipped), ``bfloat16`` (never overflows) or ``float32``."""

    rows_per_shard: int = 1000
    """Manifest rows per shard file: the unit of resumption and of work per
    rank. A shard is held in memory until written (~0.5 GB for 1000 ten-second
    utterances at full size in fp16)."""

    verify_finished_shards: bool = False
    """On resume, re-hash finished shards instead of checking their size only."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        if self.dtype not in STORAGE_DTYPES:
            result.add_error(
                f"`store.dtype` must be one of {', '.join(STORAGE_DTYPES)}, but is '{self.dtype}'."
            )
        check_positive_fields(result, self, ("rows_per_shard",), section="store.")
        return result


@dataclass(kw_only=True)
class ExtractFeaturesConfig(InferenceRunSections):
    model: ReferenceModelSection = field(
        default_factory=lambda: ReferenceModelSection(name=DEFAULT_ENCODER_CARD)
    )
    """The speech encoder (an ``sm4t_speech_encoder`` or ``whisper_encoder``
    card); ``dtype`` is its
    compute dtype (float32 reproduces the reference implementation)."""

    dataset: ExtractFeaturesDatasetSection = field(
        default_factory=lambda: ExtractFeaturesDatasetSection(
            family=AUDIO_MANIFEST_DATASET
        )
    )

    features: FeaturesSection = field(default_factory=FeaturesSection)

    store: StoreSection = field(default_factory=StoreSection)

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        if self.gang.tensor_parallel_size != 1:
            result.add_error(
                "`gang.tensor_parallel_size` must be 1: every rank runs a full encoder on its own shards."
            )
        return result
