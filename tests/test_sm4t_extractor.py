"""The batch extraction API: waveforms of any lengths -> layer-L features + lengths."""

from __future__ import annotations

import pytest
import torch
from fairseq2.models import load_model

from speechmapper_plugin.audio import AudioTooShortError, num_encoder_frames
from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4TSpeechEncoder,
    SpeechFeatureExtractor,
)
from tests.support.sm4t import speech_like, wav_bytes

# 3 s, an odd fbank length, and a length just over the minimum.
LENGTHS = [48_000, 20_000 + 77, 800]


@pytest.fixture(scope="module")
def encoder() -> SM4TSpeechEncoder:
    model = load_model("test_sm4t_hf", device=torch.device("cpu"))
    assert isinstance(model, SM4TSpeechEncoder)
    return model


@pytest.fixture(scope="module")
def waveforms() -> list[torch.Tensor]:
    return [speech_like(n, seed=i) for i, n in enumerate(LENGTHS)]


@pytest.mark.parametrize("layer_norm", [True, False])
def test_padded_batch_equals_one_by_one(
    encoder: SM4TSpeechEncoder, waveforms: list[torch.Tensor], layer_norm: bool
) -> None:
    extractor = SpeechFeatureExtractor(encoder, layer=3, layer_norm=layer_norm)

    features, lengths = extractor(waveforms)

    assert features.shape == (3, 149, 64)
    assert lengths.tolist() == [num_encoder_frames(n) for n in LENGTHS] == [149, 61, 1]

    for i, waveform in enumerate(waveforms):
        alone, alone_len = extractor([waveform])
        n = lengths[i].item()
        assert alone_len.tolist() == [n]
        torch.testing.assert_close(features[i, :n], alone[0], atol=1e-5, rtol=0)
        assert features[i, n:].abs().sum() == 0  # padding is zeroed


def test_frame_averaging_reuses_projector_semantics(
    encoder: SM4TSpeechEncoder, waveforms: list[torch.Tensor]
) -> None:
    full, full_lens = SpeechFeatureExtractor(encoder)(waveforms[:2])
    averaged, averaged_lens = SpeechFeatureExtractor(encoder, frame_averaging=2)(
        waveforms[:2]
    )

    # 2:1 averaging by hand: frame j is the mean of frames 2j and 2j+1; an odd
    # trailing frame is dropped.
    assert full_lens.tolist() == [149, 61]
    assert averaged_lens.tolist() == [74, 30]
    for i, n in enumerate(averaged_lens.tolist()):
        pairs = full[i, : 2 * n].reshape(n, 2, -1)
        torch.testing.assert_close(averaged[i, :n], (pairs[:, 0] + pairs[:, 1]) / 2)


def test_too_short_input_is_rejected_with_its_length(
    encoder: SM4TSpeechEncoder,
) -> None:
    with pytest.raises(AudioTooShortError, match="559 samples"):
        SpeechFeatureExtractor(encoder)([speech_like(16_000), speech_like(559)])

    # 2:1 averaging needs two encoder frames.
    extractor = SpeechFeatureExtractor(encoder, frame_averaging=2)
    assert extractor.min_num_samples == 880
    with pytest.raises(AudioTooShortError, match="800 samples"):
        extractor([speech_like(800)])


def test_silence_gives_finite_features(encoder: SM4TSpeechEncoder) -> None:
    features, lengths = SpeechFeatureExtractor(encoder)([torch.zeros(32_000)])

    assert lengths.tolist() == [99]
    assert torch.isfinite(features).all()


def test_extract_files_resamples_and_downmixes(
    encoder: SM4TSpeechEncoder,
) -> None:
    stereo_44k = torch.stack(
        [speech_like(88_200, seed=5, sample_rate=44_100)] * 2, dim=1
    )
    mono_8k = speech_like(16_000, seed=6, sample_rate=8_000)

    features, lengths = SpeechFeatureExtractor(encoder).extract_files(
        [wav_bytes(stereo_44k, 44_100), wav_bytes(mono_8k, 8_000)]
    )

    assert lengths.tolist() == [99, 99]  # 2 s each at 50 Hz
    assert torch.isfinite(features).all()


def test_dtype_is_configurable(
    encoder: SM4TSpeechEncoder, waveforms: list[torch.Tensor]
) -> None:
    fp32, _ = SpeechFeatureExtractor(encoder)(waveforms[:1])

    bf16_model = load_model("test_sm4t_hf", device=torch.device("cpu"))
    assert isinstance(bf16_model, SM4TSpeechEncoder)
    bf16, _ = SpeechFeatureExtractor(bf16_model, dtype=torch.bfloat16)(waveforms[:1])

    assert fp32.dtype == torch.float32 and bf16.dtype == torch.bfloat16
    relative = (bf16.float() - fp32).norm() / fp32.norm()
    assert 0 < relative.item() < 0.1


def test_layer_is_validated(encoder: SM4TSpeechEncoder) -> None:
    with pytest.raises(ValueError, match=r"1-based and must be in \[1, 4\]"):
        SpeechFeatureExtractor(encoder, layer=0)
    with pytest.raises(ValueError, match=r"1-based and must be in \[1, 4\]"):
        SpeechFeatureExtractor(encoder, layer=5)


def test_features_can_feed_a_trained_module(
    encoder: SM4TSpeechEncoder, waveforms: list[torch.Tensor]
) -> None:
    """Features carry no graph but, unlike inference tensors, work under autograd."""
    features, _ = SpeechFeatureExtractor(encoder)(waveforms[:1])
    assert not features.requires_grad

    projector = torch.nn.Linear(64, 8)
    projector(features).square().mean().backward()

    assert projector.weight.grad is not None
