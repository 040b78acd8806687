"""What the pipeline accepts as audio, turned into mono 16 kHz waveforms.

An input is a file path, the bytes of an encoded file (WAV, FLAC, Ogg, ...),
or a 1-D float waveform (numpy array or tensor, in [-1, 1]) at ``sample_rate``
(16 kHz unless given; other rates are resampled). Every failure names the
input (and, in a batch, its position), so a user with a hundred files knows
which one to fix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeAlias

import numpy as np
import torch
from torch import Tensor

from speechmapper_plugin.audio import (
    SAMPLE_RATE,
    AudioDecodeError,
    AudioError,
    InvalidWaveformError,
    check_mono_float,
    resample,
)
from speechmapper_plugin.audio.stream import load_streamed
from speechmapper_plugin.data.reasons import (
    EMPTY_AUDIO,
    INVALID_AUDIO,
    MISSING_FILE,
    TOO_LONG_AUDIO,
    TOO_LONG_FOR_LLM,
    TOO_SHORT_AUDIO,
    UNDECODABLE_AUDIO,
    UNREADABLE_FILE,
)
from speechmapper_plugin.data.usability import Unusable
from speechmapper_plugin.input_checks import is_finite

AudioInput: TypeAlias = (
    str | os.PathLike[str] | bytes | bytearray | memoryview | np.ndarray | Tensor
)
"""A path, encoded audio bytes, or a 1-D float waveform."""


class AudioInputError(ValueError):
    """An audio input cannot be used; the message names the input.

    :attr:`code` is the reason code of :mod:`speechmapper_plugin.data.reasons`
    (``missing_file``, ``too_short_audio``, ...) that reports count by.
    """

    def __init__(self, where: str, reason: str, *, code: str = INVALID_AUDIO) -> None:
        super().__init__(f"{where}: {reason}")
        self.where = where
        self.reason = reason
        self.code = code

    @property
    def problem(self) -> Unusable:
        """The reason code and detail, as a skip report records them."""
        return Unusable(self.code, self.reason.removesuffix("."))


class UnusableSpeechError(AudioInputError):
    """Speech that decodes but cannot be used: :attr:`problem` says why, with
    a reason code, as :mod:`speechmapper_plugin.data.usability` found it."""

    def __init__(self, where: str, problem: Unusable) -> None:
        super().__init__(where, f"{problem.detail}.", code=problem.reason)


class SpeechTooShortError(UnusableSpeechError):
    """The audio is too short to give the LLM a single speech embedding."""


class SpeechTooLongError(UnusableSpeechError):
    """The audio is longer than the projector or the LLM can take."""


def unusable_speech_error(where: str, problem: Unusable) -> AudioInputError:
    """The error to raise for ``problem`` (too short, too long, or other)."""
    if problem.reason == TOO_SHORT_AUDIO:
        return SpeechTooShortError(where, problem)

    if problem.reason in (TOO_LONG_AUDIO, TOO_LONG_FOR_LLM):
        return SpeechTooLongError(where, problem)

    return AudioInputError(where, f"{problem.detail}.", code=problem.reason)


def is_batch(audio: object) -> bool:
    """Lists and tuples are batches; everything else is one input."""
    return isinstance(audio, (list, tuple))


def describe_input(audio: object, index: int | None) -> str:
    """``"audio input 3 (/data/a.wav)"``: how errors refer to an input."""
    if isinstance(audio, (str, os.PathLike)):
        what = str(audio)
    elif isinstance(audio, (bytes, bytearray, memoryview)):
        what = f"{len(audio)} bytes"
    elif isinstance(audio, (np.ndarray, Tensor)):
        what = f"waveform of shape {tuple(audio.shape)}"
    else:
        what = type(audio).__name__

    position = "audio input" if index is None else f"audio input {index}"
    return f"{position} ({what})"


def load_input(
    audio: AudioInput, *, where: str, sample_rate: int | None = None
) -> Tensor:
    """Decode or convert one input to a mono float32 16 kHz waveform on CPU.

    :param where: How errors name the input (see :func:`describe_input`).
    :param sample_rate: The rate of array/tensor inputs (default 16 kHz);
        files and bytes carry their own rate.
    :raises AudioInputError: for unusable input (undecodable, missing file,
        wrong shape or dtype, NaN/inf samples, empty), with its reason code.
    """
    try:
        if isinstance(audio, (str, os.PathLike, bytes, bytearray, memoryview)):
            return _load_encoded(audio, sample_rate, where)

        if isinstance(audio, (np.ndarray, Tensor)):
            return _convert_array(audio, sample_rate or SAMPLE_RATE, where)
    except AudioDecodeError as ex:
        raise AudioInputError(where, str(ex), code=UNDECODABLE_AUDIO) from ex
    except AudioError as ex:
        raise AudioInputError(where, str(ex)) from ex
    except OSError as ex:
        raise AudioInputError(
            where, f"the file cannot be read ({ex})", code=UNREADABLE_FILE
        ) from ex

    raise AudioInputError(
        where,
        "expected a path, encoded audio bytes, a 1-D numpy array or tensor, or a list of these.",
    )


def _load_encoded(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview,
    sample_rate: int | None,
    where: str,
) -> Tensor:
    if sample_rate is not None and sample_rate != SAMPLE_RATE:
        # A file's own header states its rate; a different one here is a mistake.
        raise AudioInputError(
            where,
            f"`sample_rate` ({sample_rate}) applies to waveform arrays only; files and encoded bytes are resampled from the rate in their header.",
        )

    if isinstance(source, (str, os.PathLike)) and not Path(source).is_file():
        if Path(source).is_dir():
            raise AudioInputError(
                where, "the file is a directory.", code=UNREADABLE_FILE
            )
        raise AudioInputError(where, "the file does not exist.", code=MISSING_FILE)

    # Chunk by chunk into the 16 kHz waveform: an hour of 44.1 kHz stereo
    # FLAC peaks at +276 MB instead of +2 GB decoded whole.
    return _check_finite(load_streamed(source))


def _convert_array(audio: np.ndarray | Tensor, sample_rate: int, where: str) -> Tensor:
    waveform = (
        torch.from_numpy(np.asarray(audio)) if isinstance(audio, np.ndarray) else audio
    )

    check_mono_float(
        waveform,
        downmix_hint="downmix multichannel audio first, and pass a batch as a list of waveforms",
    )

    if waveform.numel() == 0:
        raise AudioInputError(where, "the waveform is empty.", code=EMPTY_AUDIO)

    waveform = _check_finite(waveform.detach().to("cpu", torch.float32))

    return resample(waveform, sample_rate, SAMPLE_RATE)


def _check_finite(waveform: Tensor) -> Tensor:
    if not is_finite(waveform):
        raise InvalidWaveformError("the audio holds NaN or infinite samples.")

    return waveform
