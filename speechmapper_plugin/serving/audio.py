"""Audio of a request (a multipart upload or base64 ``input_audio``) as the
pipeline's mono 16 kHz waveform, decoded by the project's decoders
(:func:`~speechmapper_plugin.speech_llm.audio_inputs.load_input`, libsndfile)
and refused with a 400 before it reaches the model: too large, undecodable,
unsupported container, or too long."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

from torch import Tensor

from speechmapper_plugin.audio import SAMPLE_RATE
from speechmapper_plugin.audio.formats import conversion_hint, is_unsupported
from speechmapper_plugin.audio.stream import is_streamable, num_samples_16k
from speechmapper_plugin.serving.errors import ApiError, bad_request
from speechmapper_plugin.speech_llm.audio_inputs import AudioInputError, load_input

INPUT_AUDIO_FORMATS: Final = ("wav", "mp3", "flac")
"""The ``input_audio.format`` values of chat completions (OpenAI's are
``wav`` and ``mp3``; FLAC is read by the same decoder)."""


@dataclass(frozen=True)
class AudioLimits:
    """What one request may send; larger or longer audio is refused with a 400."""

    max_bytes: int = 25 * 1024 * 1024
    """Encoded size (OpenAI's upload limit is 25 MB)."""

    max_seconds: float = 300.0
    """Decoded duration (the LLM's context usually ends well before)."""

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or not self.max_seconds > 0:
            raise ValueError(
                f"Audio limits must be positive, but are {self.max_bytes} bytes and {self.max_seconds} s."
            )


def decode_upload(
    data: bytes, limits: AudioLimits, *, param: str, filename: str | None = None
) -> Tensor:
    """An encoded file's bytes as a mono float32 16 kHz waveform.

    :param param: The request field the audio came in (named in errors).
    :raises ApiError: 400 with the reason code (``audio_too_large``,
        ``undecodable_audio``, ``empty_audio``, ``audio_too_long``, ...).
    """
    if len(data) > limits.max_bytes:
        raise _too_large(len(data), limits, param)

    if filename and is_unsupported(filename):
        raise bad_request(
            f"`{param}`: {conversion_hint(filename)}",
            param=param,
            code="unsupported_audio_format",
        )

    where = f"`{param}`" + (f" ({filename})" if filename else "")
    # From the header where the format states its length: nothing decoded.
    stated = num_samples_16k(data) if is_streamable(data) else None
    if stated is not None:
        _check_length(stated, limits, where, param)
    try:
        waveform = load_input(data, where=where)
    except AudioInputError as ex:
        raise bad_request(str(ex), param=param, code=ex.code) from None
    _check_length(waveform.numel(), limits, where, param)
    return waveform


def _check_length(samples: int, limits: AudioLimits, where: str, param: str) -> None:
    seconds = samples / SAMPLE_RATE
    if seconds > limits.max_seconds:
        raise bad_request(
            f"{where}: the audio is {seconds:.1f} s long; this server takes at most {limits.max_seconds:g} s.",
            param=param,
            code="audio_too_long",
        )


def decode_base64_audio(
    data: object, audio_format: object, limits: AudioLimits, *, param: str
) -> Tensor:
    """``input_audio``'s base64 ``data`` in ``format`` (wav, mp3 or flac)."""
    if audio_format not in INPUT_AUDIO_FORMATS:
        raise bad_request(
            f"`{param}.format` must be one of {', '.join(INPUT_AUDIO_FORMATS)}, but is {audio_format!r}.",
            param=f"{param}.format",
            code="unsupported_audio_format",
        )
    if not isinstance(data, str) or not data:
        raise bad_request(
            f"`{param}.data` must be the base64 encoded audio file.",
            param=f"{param}.data",
        )

    # Refused before decoding: base64 is 4 characters per 3 bytes.
    if len(data) // 4 * 3 > limits.max_bytes + 3:
        raise _too_large(len(data) // 4 * 3, limits, f"{param}.data")

    try:
        encoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as ex:
        raise bad_request(
            f"`{param}.data` is not valid base64 ({ex}).",
            param=f"{param}.data",
            code="invalid_base64",
        ) from None

    return decode_upload(encoded, limits, param=f"{param}.data")


def _too_large(size: int, limits: AudioLimits, param: str) -> ApiError:
    return bad_request(
        f"`{param}`: the audio is {size} bytes; this server takes at most {limits.max_bytes} bytes.",
        param=param,
        code="audio_too_large",
    )
