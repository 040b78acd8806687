"""Crash-safe file writes, the package's one way to replace a file: a reader
sees the old file, the new file, or none, never a partial one.

Data goes to a temporary name in the same directory, is fsynced, then renamed
over the final name (atomic on POSIX file systems, including Lustre/GPFS/NFSv4
for a rename within one directory), and the directory is fsynced so the rename
itself survives a power loss. The temporary file is created with ``open``, so
the final file has the usual permissions (umask), not a private 0600.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

TMP_MARKER = ".tmp."


def temp_name(path: Path) -> Path:
    """A name unique to this host and process, next to ``path``."""
    return path.with_name(
        f".{path.name}{TMP_MARKER}{socket.gethostname()}.{os.getpid()}"
    )


def atomic_write_bytes(path: Path, data: bytes | memoryview) -> None:
    """Replace ``path`` by ``data`` (its directory must exist)."""
    tmp = temp_name(path)

    try:
        with tmp.open("wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())

        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise

    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` in UTF-8 (its directory must exist)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # Not supported on this platform/file system.
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temp_files(directory: Path, prefix: str) -> int:
    """Delete leftovers of killed writers whose final name starts with ``prefix``."""
    removed = 0
    for tmp in directory.glob(f".{prefix}*{TMP_MARKER}*"):
        tmp.unlink(missing_ok=True)
        removed += 1
    return removed
