"""The audio front end: decoding, downmixing, resampling, fbank and its guards."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor

from speechmapper_plugin.audio import (
    AudioDecodeError,
    AudioError,
    AudioTooShortError,
    FbankExtractor,
    InvalidWaveformError,
    decode_audio,
    load_audio,
    min_num_samples,
    num_encoder_frames,
    num_fbank_frames,
    resample,
    standardize_fbank,
    to_mono,
)
from tests.support.sm4t import speech_like, tone, wav_bytes


def band_energy_db(signal: Tensor, sample_rate: int, low: float, high: float) -> float:
    """Energy in [low, high) Hz relative to the total, in dB (Hann-windowed FFT)."""
    window = torch.hann_window(signal.numel(), dtype=torch.float64)
    power = torch.fft.rfft(signal.to(torch.float64) * window).abs() ** 2
    freqs = torch.fft.rfftfreq(signal.numel(), 1 / sample_rate)
    band = power[(freqs >= low) & (freqs < high)].sum()
    return 10 * math.log10(band.item() / power.sum().item() + 1e-30)


def test_silence_gives_finite_standardised_features() -> None:
    fbank = FbankExtractor()(torch.zeros(16_000))

    assert fbank.shape == (98, 80)
    assert torch.isfinite(fbank).all()
    assert fbank.abs().max() == 0  # constant bins standardise to 0, not NaN


def test_standardisation_is_per_bin_and_unbiased() -> None:
    x = torch.randn(50, 80, dtype=torch.float64) * 3 + 7
    y = standardize_fbank(x)

    torch.testing.assert_close(
        y.mean(0), torch.zeros(80, dtype=torch.float64), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(
        y.std(0, unbiased=True), torch.ones(80, dtype=torch.float64), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize("seconds", [1, 2, 5, 7])
def test_frame_rate_is_50_hz(seconds: int) -> None:
    num_samples = 16_000 * seconds

    fbank = FbankExtractor()(speech_like(num_samples))

    assert fbank.size(0) == num_fbank_frames(num_samples)
    assert abs(num_encoder_frames(num_samples) - 50 * seconds) <= 1


def test_too_short_audio_names_its_length() -> None:
    assert min_num_samples() == 560

    with pytest.raises(AudioTooShortError, match="559 samples") as info:
        FbankExtractor()(speech_like(559))
    assert isinstance(info.value, AudioError) and isinstance(info.value, ValueError)
    assert info.value.num_samples == 559 and info.value.min_num_samples == 560

    assert num_encoder_frames(560) == 1
    assert FbankExtractor()(speech_like(560)).size(0) == 2


def test_invalid_waveforms_are_rejected() -> None:
    extractor = FbankExtractor()

    with pytest.raises(InvalidWaveformError, match="NaN"):
        extractor(torch.full((16_000,), math.nan))
    with pytest.raises(InvalidWaveformError, match="mono"):
        extractor(torch.zeros(2, 16_000))
    with pytest.raises(InvalidWaveformError, match="floating point"):
        extractor(torch.zeros(16_000, dtype=torch.int16))


def test_decode_from_bytes_and_path(tmp_path: Path) -> None:
    signal = speech_like(16_000)
    data = wav_bytes(signal, 16_000)
    path = tmp_path / "a.wav"
    path.write_bytes(data)

    from_bytes = decode_audio(data)
    from_path = decode_audio(path)

    assert from_bytes.sample_rate == from_path.sample_rate == 16_000
    assert from_bytes.waveform.shape == (16_000, 1)
    torch.testing.assert_close(from_bytes.waveform, from_path.waveform)
    torch.testing.assert_close(from_bytes.waveform[:, 0], signal, atol=1e-4, rtol=0)
    torch.testing.assert_close(load_audio(str(path)), signal, atol=1e-4, rtol=0)


def test_undecodable_and_empty_audio_raise_audio_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioDecodeError, match="cannot be decoded"):
        decode_audio(b"this is not audio" * 100)

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioDecodeError, match="empty"):
        decode_audio(empty)

    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "missing.wav")


def test_stereo_is_downmixed_by_averaging() -> None:
    left = tone(440, 1.0, 16_000, amplitude=0.6)
    right = tone(1000, 1.0, 16_000, amplitude=0.2)

    mono = load_audio(wav_bytes(torch.stack([left, right], dim=1), 16_000))

    torch.testing.assert_close(mono, (left + right) / 2, atol=1e-4, rtol=0)
    torch.testing.assert_close(
        to_mono(torch.stack([left, right]), channel_dim=0), (left + right) / 2
    )


def test_44_1_khz_is_resampled_without_aliasing() -> None:
    # 1 kHz speech-band tone plus a 11 kHz tone that 16 kHz cannot represent: a
    # resampler without a low-pass filter folds it to 16 - 11 = 5 kHz.
    speech_band = tone(1000, 2.0, 44_100)
    out_of_band = tone(11_000, 2.0, 44_100)

    resampled = load_audio(wav_bytes(0.5 * (speech_band + out_of_band), 44_100))

    assert abs(resampled.numel() - 32_000) <= 1
    assert band_energy_db(resampled, 16_000, 4_500, 5_500) < -60
    assert band_energy_db(resampled, 16_000, 900, 1_100) > -0.1
    torch.testing.assert_close(
        resampled[1_000:-1_000],
        0.5 * tone(1000, 2.0, 16_000)[1_000:-1_000],
        atol=2e-3,
        rtol=0,
    )


def test_8_khz_is_resampled_without_imaging() -> None:
    signal = tone(1000, 2.0, 8_000)

    resampled = load_audio(wav_bytes(signal, 8_000))

    assert resampled.numel() == 32_000
    # Zero-order hold or linear interpolation leave images at 7 and 9 kHz.
    assert band_energy_db(resampled, 16_000, 4_100, 8_000) < -60
    torch.testing.assert_close(
        resampled[1_000:-1_000],
        tone(1000, 2.0, 16_000)[1_000:-1_000],
        atol=2e-3,
        rtol=0,
    )


def test_resample_is_a_no_op_at_16_khz() -> None:
    signal = speech_like(8_000)

    assert torch.equal(resample(signal, 16_000), signal)
