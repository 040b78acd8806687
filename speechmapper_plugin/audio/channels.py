"""Downmixing multichannel audio to the mono signal the speech encoder takes."""

from __future__ import annotations

from torch import Tensor

from speechmapper_plugin.audio.errors import InvalidWaveformError


def to_mono(waveform: Tensor, *, channel_dim: int = -1) -> Tensor:
    """Average the channels of ``waveform`` (1-D input is returned as is).

    Averaging (rather than picking a channel) keeps speech that is panned to
    one side and never clips.

    :param channel_dim: The channel axis of a 2-D ``waveform``: ``-1`` for
        ``[samples, channels]`` (what fairseq2's ``AudioDecoder`` returns),
        ``0`` for ``[channels, samples]``.
    """
    if waveform.dim() == 1:
        return waveform

    if waveform.dim() != 2:
        raise InvalidWaveformError(
            f"A waveform must be 1-D (mono) or 2-D (multichannel), but has shape {tuple(waveform.shape)}."
        )

    if waveform.size(channel_dim) == 1:
        return waveform.squeeze(channel_dim)

    return waveform.mean(dim=channel_dim)
