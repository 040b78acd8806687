"""Reads audio manifests (the rows: :mod:`speechmapper_plugin.data.manifest`).

Two formats, chosen by extension (column names: see ``manifest_columns.py``):

- ``.tsv``: a header row naming the columns, tab-separated, no quoting. An
  optional first line holding only a directory is the audio root (fairseq2's
  wav2vec2 manifests start that way). fairseq2's headerless layout (root line,
  then ``path<TAB>num_samples`` rows, transcripts in a sibling ``.wrd`` file
  with one line per row) is read as well.
- ``.jsonl``: one JSON object per line with the same field names.

Relative audio paths are resolved against ``root`` (argument) or else the
manifest's root line or else the manifest's directory. Reading never stops at a
bad row: malformed rows come back as ``BadRow`` entries. Only a manifest
that cannot be used at all raises ``ManifestError``.
"""

from __future__ import annotations

from pathlib import Path

from speechmapper_plugin.data.manifest import ManifestError, ManifestReadResult
from speechmapper_plugin.data.manifest_jsonl import read_jsonl_manifest
from speechmapper_plugin.data.manifest_tsv import read_tsv_manifest


def read_manifest(
    path: str | Path, *, root: str | Path | None = None, require_rows: bool = True
) -> ManifestReadResult:
    """Read a ``.tsv`` or ``.jsonl`` manifest.

    :param root: Resolve relative audio paths against this directory instead
        of the manifest's root line or directory.
    :param require_rows: Raise if no row is usable (a validator passes
        ``False`` to list every bad row instead).
    :raises ManifestError: if the manifest is missing, has an unknown
        extension, a TSV has no header, or (with ``require_rows``) no row is usable.
    """
    path = Path(path).expanduser()

    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise ManifestError(f"The manifest {path} {what}.")

    suffix = path.suffix.lower()

    root_dir = Path(root).expanduser().resolve() if root is not None else None

    if suffix == ".tsv":
        result = read_tsv_manifest(path, root_dir)
    elif suffix in (".jsonl", ".ndjson"):
        result = read_jsonl_manifest(path, root_dir)
    else:
        raise ManifestError(
            f"The manifest {path} has the unknown extension '{path.suffix}'; use `.tsv` (header row + tab-separated columns) or `.jsonl` (one JSON object per line)."
        )

    if require_rows and not result.rows:
        shown = "; ".join(b.describe() for b in result.bad_rows[:5])
        more = (
            ""
            if len(result.bad_rows) <= 5
            else f"; and {len(result.bad_rows) - 5} more"
        )
        raise ManifestError(
            f"The manifest {path} has no usable row ({len(result.bad_rows)} bad row(s){': ' + shown + more if shown else ''}). Run `python -m speechmapper_plugin.data.validate_manifest {path}` for a full report."
        )

    return result
