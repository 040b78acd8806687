"""Store metadata, utterance entries and shard records, and their JSON forms."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Final

import torch

from speechmapper_plugin.data.feature_store.errors import FeatureStoreError
from speechmapper_plugin.data.manifest import BadRow

STORAGE_DTYPES: Final = {
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
}
"""Names accepted for the storage dtype. fp16 keeps 3 more mantissa bits than
bf16 but overflows above 65504 (such rows are skipped as non-finite); bf16
never overflows. float32 doubles the size and is meant for parity checks."""


def storage_dtype(name: str) -> torch.dtype:
    try:
        return STORAGE_DTYPES[name]
    except KeyError:
        raise FeatureStoreError(
            f"Unknown storage dtype '{name}'; use one of {', '.join(STORAGE_DTYPES)}."
        ) from None


IDENTITY_FIELDS: Final = (
    "format_version",
    "dim",
    "dtype",
    "frame_averaging",
    "encoder",
    "layer",
    "layer_norm",
    "manifest_sha256",
    "audio_root",
    "rows_per_shard",
    "num_rows",
)
"""Fields that decide the content of the shards: resuming requires them equal."""


@dataclass(kw_only=True)
class FeatureStoreMetadata:
    """What the stored features are and how they were made (``store.json``)."""

    format_version: int = 1

    dim: int
    """Feature width (1024 for SeamlessM4T-v2 large)."""

    dtype: str
    """Storage dtype: ``float16``, ``bfloat16`` or ``float32``."""

    frame_averaging: int
    """Encoder frames averaged into one stored frame (2: 50 Hz -> 25 Hz)."""

    frame_rate: float
    """Stored frames per second of audio."""

    sample_rate: int = 16_000
    """The rate audio was resampled to before the encoder."""

    encoder: str
    """The speech encoder: its asset card name (or checkpoint path)."""

    encoder_family: str = "sm4t_speech_encoder"

    layer: int
    """1-based encoder layer the features come from."""

    layer_norm: bool
    """Whether the encoder's final LayerNorm was applied to that layer."""

    manifest: str
    manifest_sha256: str
    audio_root: str
    split: str | None = None

    rows_per_shard: int
    num_shards: int
    num_rows: int
    """Manifest rows sent to extraction (after malformed rows and duplicates)."""

    created_by: str = ""
    """The command line that created the store."""

    config: dict[str, Any] = field(default_factory=dict)
    """The extraction recipe's configuration."""

    @property
    def torch_dtype(self) -> torch.dtype:
        return storage_dtype(self.dtype)

    def identity(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in IDENTITY_FIELDS}

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: Path) -> FeatureStoreMetadata:
        data = _load_object(text, source)
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as ex:
            raise FeatureStoreError(
                f"{source} is not valid store metadata: {ex}"
            ) from None


@dataclass(frozen=True)
class FeatureEntry:
    """One utterance in the store."""

    id: str
    shard: int
    offset: int
    """First frame of the utterance in its shard's tensor."""

    num_frames: int
    """Stored frames (after averaging)."""

    transcript: str
    lang: str | None
    line_no: int
    """Line of the utterance in the source manifest."""

    num_samples: int
    """Audio length at 16 kHz (after resampling)."""

    @property
    def duration(self) -> float:
        """Seconds of audio."""
        return self.num_samples / 16_000

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureEntry:
        return cls(
            id=str(data["id"]),
            shard=int(data["shard"]),
            offset=int(data["offset"]),
            num_frames=int(data["num_frames"]),
            transcript=str(data["transcript"]),
            lang=data.get("lang"),
            line_no=int(data["line_no"]),
            num_samples=int(data["num_samples"]),
        )


@dataclass(kw_only=True)
class ShardRecord:
    """The proof that a shard is finished: written after its data file."""

    shard: int
    row_start: int
    row_stop: int
    file: str
    """The data file's name, relative to the shard directory."""

    sha256: str
    num_bytes: int
    num_frames: int
    dim: int
    dtype: str
    entries: list[FeatureEntry]
    skipped: list[BadRow]
    audio_seconds: float = 0.0
    extraction_seconds: float = 0.0

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str, *, source: Path) -> ShardRecord:
        data = _load_object(text, source)
        try:
            entries = [FeatureEntry.from_dict(e) for e in data.pop("entries")]
            skipped = [BadRow(**b) for b in data.pop("skipped")]
            return cls(**data, entries=entries, skipped=skipped)
        except (KeyError, TypeError, ValueError) as ex:
            raise FeatureStoreError(
                f"{source} is not a valid shard record: {ex!r}"
            ) from None


def bad_rows_to_json(bad_rows: list[BadRow]) -> str:
    return json.dumps([asdict(b) for b in bad_rows], ensure_ascii=False) + "\n"


def bad_rows_from_json(text: str, *, source: Path) -> list[BadRow]:
    try:
        data = json.loads(text)
        return [BadRow(**b) for b in data]
    except (ValueError, TypeError) as ex:
        raise FeatureStoreError(
            f"{source} is not a valid list of bad rows: {ex}"
        ) from None


def _load_object(text: str, source: Path) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as ex:
        raise FeatureStoreError(f"{source} is not valid JSON: {ex}") from None
    if not isinstance(data, dict):
        raise FeatureStoreError(f"{source} must hold a JSON object.")
    return data
