"""``python -m speechmapper_plugin.export RUN_DIR OUT_DIR``: share a trained projector or adapter."""

from __future__ import annotations

from speechmapper_plugin.export.provenance import (
    read_run_provenance as read_run_provenance,
)
