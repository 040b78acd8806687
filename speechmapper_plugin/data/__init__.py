"""Audio manifests and the on-disk feature store.

Submodules: ``manifest`` (reading), ``manifest_validation`` and the
``validate_manifest`` command, ``audio_dataset`` (the dataset family),
``waveform_reader``, ``extraction`` and ``feature_store``.
"""

from __future__ import annotations

from speechmapper_plugin.data.manifest import BadRow as BadRow
from speechmapper_plugin.data.manifest import ManifestError as ManifestError
from speechmapper_plugin.data.manifest import ManifestReadResult as ManifestReadResult
from speechmapper_plugin.data.manifest import ManifestRow as ManifestRow
from speechmapper_plugin.data.manifest_columns import FIELD_ALIASES as FIELD_ALIASES
from speechmapper_plugin.data.manifest_reader import read_manifest as read_manifest
from speechmapper_plugin.data.row_checks import check_transcript as check_transcript
from speechmapper_plugin.data.row_checks import (
    split_duplicate_ids as split_duplicate_ids,
)
