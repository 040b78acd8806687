"""On-disk formats and the tools over them: audio manifests (reading,
validation, the ``validate_manifest`` command), the instruction format
(``instructions``), the feature store and feature extraction, corpus
converters (``convert``), the usability checks and the reason codes of every
skip report.

The fairseq2 dataset families that read these formats into batches live in
:mod:`speechmapper_plugin.datasets`.
"""

from __future__ import annotations

from speechmapper_plugin.data.manifest import BadRow as BadRow
from speechmapper_plugin.data.manifest import ManifestError as ManifestError
from speechmapper_plugin.data.manifest import ManifestRow as ManifestRow
from speechmapper_plugin.data.manifest_reader import read_manifest as read_manifest
