"""The audio-manifest dataset family (``speechmapper_audio_manifest``).

A dataset is one manifest per split; it hands out the usable rows (malformed
rows and duplicate ids already set aside as :class:`BadRow`\\ s) and fairseq2
readers of decoded 16 kHz waveform batches.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from fairseq2.datasets import DatasetHubAccessor
from fairseq2.utils.validation import ValidationResult

from speechmapper_plugin.data.manifest import (
    BadRow,
    ManifestError,
    ManifestReadResult,
    ManifestRow,
)
from speechmapper_plugin.data.manifest_reader import read_manifest
from speechmapper_plugin.data.row_checks import split_duplicate_ids

AUDIO_MANIFEST_DATASET: Final = "speechmapper_audio_manifest"


@dataclass(kw_only=True)
class AudioManifestDatasetConfig:
    manifests: dict[str, Path] = field(default_factory=dict)
    """Split name -> manifest file (``.tsv`` or ``.jsonl``), e.g.
    ``{"train": /data/ls/train.tsv, "dev": /data/ls/dev.tsv}``."""

    root: Path | None = None
    """Directory relative audio paths are resolved against; default: each
    manifest's root line, else its directory."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        if not self.manifests:
            result.add_error(
                "`manifests` must name at least one split, e.g. `manifests: {train: /path/train.tsv}`."
            )
        return result


@dataclass
class ManifestSplit:
    """The usable rows of one split and the rows set aside."""

    split: str
    manifest: ManifestReadResult
    rows: list[ManifestRow]
    """Parsed rows with unique ids, in manifest order."""

    bad_rows: list[BadRow]
    """Malformed rows and duplicate ids, by line."""


class AudioManifestDataset:
    def __init__(
        self, manifests: Mapping[str, Path], *, root: Path | None = None
    ) -> None:
        self._manifests = {split: Path(p) for split, p in manifests.items()}
        self._root = root
        self._cache: dict[str, ManifestSplit] = {}

    @property
    def splits(self) -> list[str]:
        return sorted(self._manifests)

    def manifest_path(self, split: str) -> Path:
        try:
            return self._manifests[split]
        except KeyError:
            raise ManifestError(
                f"The dataset has no split '{split}'; its splits are {', '.join(self.splits) or 'none'}."
            ) from None

    def read_split(self, split: str) -> ManifestSplit:
        """Parse the split's manifest (once) and set aside duplicate ids.

        :raises ManifestError: if the manifest is unusable as a whole.
        """
        cached = self._cache.get(split)
        if cached is not None:
            return cached

        manifest = read_manifest(self.manifest_path(split), root=self._root)

        rows, duplicates = split_duplicate_ids(manifest.rows)

        bad_rows = sorted(manifest.bad_rows + duplicates, key=lambda b: b.line_no)

        result = ManifestSplit(split, manifest, rows, bad_rows)

        self._cache[split] = result

        return result


def open_audio_manifest_dataset(
    config: AudioManifestDatasetConfig,
) -> AudioManifestDataset:
    return AudioManifestDataset(config.manifests, root=config.root)


get_audio_manifest_dataset_hub = DatasetHubAccessor(
    AUDIO_MANIFEST_DATASET, AudioManifestDataset, AudioManifestDatasetConfig
)
"""Typed access: ``get_audio_manifest_dataset_hub().open_dataset(card)``."""
