"""Band-limited resampling to the encoder's 16 kHz, with libsoxr.

soxr's "HQ" recipe (20-bit precision, linear phase) low-pass filters at the
lower Nyquist frequency, so down-sampling (44.1/48 kHz -> 16 kHz) does not fold
energy above 8 kHz into the speech band and up-sampling (8 kHz -> 16 kHz) does
not create images above 4 kHz. ``tests/test_sm4t_audio.py`` measures both.
"""

from __future__ import annotations

import numpy as np
import soxr
import torch
from torch import Tensor

from speechmapper_plugin.audio.errors import InvalidWaveformError

TARGET_SAMPLE_RATE = 16_000
"""The sample rate of SeamlessM4T's fbank front end."""


def resample(
    waveform: Tensor, sample_rate: int, target_sample_rate: int = TARGET_SAMPLE_RATE
) -> Tensor:
    """Resample a mono ``waveform`` (1-D) from ``sample_rate`` to ``target_sample_rate``.

    Returns float32 on the input's device; a no-op when the rates match.
    """
    if sample_rate <= 0 or target_sample_rate <= 0:
        raise InvalidWaveformError(
            f"Sample rates must be positive, but are {sample_rate} and {target_sample_rate}."
        )

    if waveform.dim() != 1:
        raise InvalidWaveformError(
            f"`resample` takes a mono 1-D waveform, but got shape {tuple(waveform.shape)}; downmix it with `to_mono` first."
        )

    waveform = waveform.to(torch.float32)

    if sample_rate == target_sample_rate or waveform.numel() == 0:
        return waveform

    samples = waveform.detach().cpu().numpy()

    resampled = soxr.resample(samples, sample_rate, target_sample_rate, quality="HQ")

    return torch.from_numpy(np.ascontiguousarray(resampled)).to(waveform.device)
