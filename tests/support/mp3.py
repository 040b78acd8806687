"""MP3 files for tests, written offline through the system's libsndfile.

libsndfile >= 1.1 encodes MPEG layer III with libmp3lame (Debian's
libsndfile1 links it), so no ``lame`` or ``ffmpeg`` binary is needed. Common
Voice and CoVoST 2 ship their clips as MP3.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import numpy as np

_SFM_WRITE = 0x20
_SF_FORMAT_MPEG = 0x230000
_SF_FORMAT_MPEG_LAYER_III = 0x0082


class _SFInfo(ctypes.Structure):
    _fields_ = [
        ("frames", ctypes.c_int64),
        ("samplerate", ctypes.c_int),
        ("channels", ctypes.c_int),
        ("format", ctypes.c_int),
        ("sections", ctypes.c_int),
        ("seekable", ctypes.c_int),
    ]


def _libsndfile() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("sndfile")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    lib.sf_open.restype = ctypes.c_void_p
    lib.sf_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(_SFInfo)]
    lib.sf_writef_float.restype = ctypes.c_int64
    lib.sf_writef_float.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    lib.sf_close.argtypes = [ctypes.c_void_p]
    lib.sf_strerror.restype = ctypes.c_char_p
    lib.sf_strerror.argtypes = [ctypes.c_void_p]
    return lib


def can_write_mp3() -> bool:
    lib = _libsndfile()
    if lib is None:
        return False
    info = _SFInfo(0, 16_000, 1, _SF_FORMAT_MPEG | _SF_FORMAT_MPEG_LAYER_III, 0, 0)
    check = getattr(lib, "sf_format_check", None)
    if check is None:
        return False
    check.argtypes = [ctypes.POINTER(_SFInfo)]
    return bool(check(ctypes.byref(info)))


def write_mp3(path: Path, samples: np.ndarray, sample_rate: int) -> Path:
    """Mono float samples in [-1, 1] -> an MP3 file."""
    lib = _libsndfile()
    if lib is None:
        raise RuntimeError("libsndfile is not installed.")
    path.parent.mkdir(parents=True, exist_ok=True)
    info = _SFInfo(0, sample_rate, 1, _SF_FORMAT_MPEG | _SF_FORMAT_MPEG_LAYER_III, 0, 0)
    handle = lib.sf_open(str(path).encode(), _SFM_WRITE, ctypes.byref(info))
    if not handle:
        raise RuntimeError(
            f"libsndfile cannot write MP3: {lib.sf_strerror(None).decode()}"
        )
    data = np.ascontiguousarray(samples, dtype=np.float32)
    try:
        written = lib.sf_writef_float(handle, data.ctypes.data, data.shape[0])
    finally:
        lib.sf_close(handle)
    if written != data.shape[0]:
        raise RuntimeError(f"libsndfile wrote {written} of {data.shape[0]} frames.")
    return path
