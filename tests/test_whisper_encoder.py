"""The Whisper encoder family: parity with transformers, windows, checkpoints.

The reference is a tiny, perturbed transformers ``WhisperForConditionalGeneration``
saved as HF safetensors (card ``test_whisper_hf``, 1-second windows), fed
with transformers' own feature extractor output one utterance at a time; ours
runs batched through :class:`WhisperSpeechFeatureExtractor`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from fairseq2.models import load_model
from safetensors import safe_open
from torch import Tensor

from speechmapper_plugin.audio import AudioTooShortError
from speechmapper_plugin.models.whisper_encoder import (
    WhisperEncoder,
    WhisperEncoderConfig,
    WhisperSpeechFeatureExtractor,
    convert_whisper_encoder_state_dict,
    get_whisper_encoder_hub,
    num_valid_positions,
    select_whisper_encoder_keys,
)
from speechmapper_plugin.tiny_assets.whisper import WHISPER_TINY_DIMS
from tests.support.cards import SessionCards

ATOL = 1e-4
NUM_LAYERS = WHISPER_TINY_DIMS["num_encoder_layers"]
WINDOW = 16_000  # the tiny arch's 1-second window


@pytest.fixture(scope="module")
def hf_model(test_cards: SessionCards) -> Any:
    from transformers import WhisperForConditionalGeneration

    return WhisperForConditionalGeneration.from_pretrained(
        test_cards.whisper_hf_dir
    ).eval()


@pytest.fixture(scope="module")
def hf_features() -> object:
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(
        feature_size=WHISPER_TINY_DIMS["num_mel_bins"], chunk_length=1
    )


@pytest.fixture(scope="module")
def ours() -> WhisperEncoder:
    model = load_model("test_whisper_hf", device=torch.device("cpu"))
    assert isinstance(model, WhisperEncoder)
    return model.eval()


def speech_like(num_samples: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(num_samples) / 16_000
    tone = torch.sin(2 * torch.pi * (150 + 50 * seed) * t)
    return 0.3 * tone + 0.05 * torch.randn(num_samples, generator=generator)


@torch.no_grad()
def hf_reference(
    hf_model: Any, hf_features: object, waveform: Tensor, layer: int
) -> Tensor:
    """transformers' output of one utterance: each 1 s window on its own
    (``hidden_states[layer]``), valid positions concatenated."""
    parts = []
    for start in range(0, waveform.numel(), WINDOW):
        chunk = waveform[start : start + WINDOW]
        n = num_valid_positions(chunk.numel())
        if n == 0:
            continue
        mels = hf_features(  # type: ignore[operator]
            [chunk.numpy()], sampling_rate=16_000, return_tensors="pt"
        )["input_features"]
        states = hf_model.model.encoder(mels, output_hidden_states=True).hidden_states
        parts.append(states[layer][0, :n])
    return torch.cat(parts)


LENGTHS = [4_000, 11_000, 16_000, 40_000]
"""0.25 s and 0.69 s (one padded window), exactly one window, 2.5 s (three
windows, the last half full)."""


@pytest.mark.parametrize("layer", range(1, NUM_LAYERS + 1))
def test_every_layer_matches_transformers_batched_with_padding(
    ours: WhisperEncoder,
    hf_model: Any,
    hf_features: object,
    layer: int,
) -> None:
    # transformers' hidden_states[k] is the raw block output for k < L and
    # the final-LayerNormed output for k = L.
    extractor = WhisperSpeechFeatureExtractor(
        ours, layer=layer, layer_norm=layer == NUM_LAYERS, max_windows=3
    )
    waveforms = [speech_like(n, seed) for seed, n in enumerate(LENGTHS)]

    features, lengths = extractor(waveforms)

    expected_lengths = [
        sum(num_valid_positions(min(WINDOW, n - s)) for s in range(0, n, WINDOW))
        for n in LENGTHS
    ]
    assert lengths.tolist() == expected_lengths == [13, 34, 50, 125]

    for i, waveform in enumerate(waveforms):
        reference = hf_reference(hf_model, hf_features, waveform, layer)
        n = int(lengths[i])
        assert reference.shape == (n, WHISPER_TINY_DIMS["model_dim"])
        torch.testing.assert_close(features[i, :n], reference, atol=ATOL, rtol=0)
        assert features[i, n:].abs().sum() == 0


def test_window_arithmetic() -> None:
    # 100 mel frames per second, halved by the stride-2 convolution.
    assert num_valid_positions(480_000) == 1500
    assert num_valid_positions(16_000) == 50
    assert num_valid_positions(159) == 0
    assert num_valid_positions(160) == 1
    assert num_valid_positions(320) == 1
    assert num_valid_positions(480) == 2


def test_long_audio_is_windows_concatenated(ours: WhisperEncoder) -> None:
    extractor = WhisperSpeechFeatureExtractor(ours)
    waveform = speech_like(40_000, 3)

    long_features, long_lengths = extractor([waveform])
    parts = [extractor([waveform[s : s + WINDOW]]) for s in (0, 16_000, 32_000)]

    assert int(long_lengths[0]) == 50 + 50 + 25
    joined = torch.cat([f[0, : int(n[0])] for f, n in parts])
    torch.testing.assert_close(long_features[0], joined, atol=1e-5, rtol=0)


def test_remainder_too_short_for_a_position_is_dropped(ours: WhisperEncoder) -> None:
    extractor = WhisperSpeechFeatureExtractor(ours)
    waveform = speech_like(16_000 + 100, 4)
    features, lengths = extractor([waveform])
    assert lengths.tolist() == [50]
    exact, _ = extractor([waveform[:16_000]])
    torch.testing.assert_close(features, exact, atol=1e-5, rtol=0)


def test_batched_equals_one_by_one_with_frame_averaging(ours: WhisperEncoder) -> None:
    extractor = WhisperSpeechFeatureExtractor(ours, frame_averaging=2, max_windows=2)
    waveforms = [speech_like(n, seed) for seed, n in enumerate(LENGTHS)]
    batch, lengths = extractor(waveforms)
    assert lengths.tolist() == [6, 17, 25, 62]
    assert extractor.frame_rate == 25.0
    for i, waveform in enumerate(waveforms):
        single, single_lengths = extractor([waveform])
        n = int(single_lengths[0])
        assert n == int(lengths[i])
        torch.testing.assert_close(batch[i, :n], single[0, :n], atol=1e-5, rtol=0)


def test_too_short_audio_raises(ours: WhisperEncoder) -> None:
    extractor = WhisperSpeechFeatureExtractor(ours, frame_averaging=2)
    assert extractor.min_num_samples == 480
    with pytest.raises(AudioTooShortError, match="480 samples"):
        extractor([speech_like(479, 0)])
    features, lengths = extractor([speech_like(480, 0)])
    assert lengths.tolist() == [1]


def test_model_refuses_partial_windows(ours: WhisperEncoder) -> None:
    with pytest.raises(ValueError, match=r"whole Whisper windows .*1 s windows"):
        ours(torch.zeros(1, 16, 60))


def test_card_reads_encoder_tensors_only(test_cards: SessionCards) -> None:
    (file,) = test_cards.whisper_hf_dir.glob("*.safetensors")
    with safe_open(file, framework="pt") as f:
        keys = list(f.keys())

    selected = select_whisper_encoder_keys(keys)

    assert any(k.startswith("model.decoder.") for k in keys)
    assert selected == [k for k in keys if k.startswith("model.encoder.")]

    with pytest.raises(ValueError, match="Unexpected key `lm_head.extra`"):
        select_whisper_encoder_keys([*keys, "lm_head.extra"])


def test_card_config_and_output_layer(test_cards: SessionCards) -> None:
    hub = get_whisper_encoder_hub()
    config = hub.get_model_config("test_whisper_hf")
    assert config.num_encoder_layers == NUM_LAYERS
    assert config.window_seconds == 1
    large = hub.get_arch_config("large_v3")
    assert (large.model_dim, large.num_mel_bins, large.window_num_samples) == (
        1280,
        128,
        480_000,
    )


def tiny_config(**overrides: int) -> WhisperEncoderConfig:
    dims: dict[str, Any] = {**WHISPER_TINY_DIMS, **overrides}
    return WhisperEncoderConfig(**dims, output_layer=1)


def test_converter_refuses_wrong_depth_and_learned_positions(
    hf_model: Any,
) -> None:
    state = dict(hf_model.state_dict())

    with pytest.raises(ValueError, match="2 encoder blocks, but .* expects 3"):
        convert_whisper_encoder_state_dict(state, tiny_config(num_encoder_layers=3))

    learned = dict(state)
    learned["model.encoder.embed_positions.weight"] = torch.randn(50, 64)
    with pytest.raises(ValueError, match="cannot load learned ones"):
        convert_whisper_encoder_state_dict(learned, tiny_config())

    converted = convert_whisper_encoder_state_dict(state, tiny_config())
    k_bias = converted["encoder.layers.0.self_attn.k_proj.bias"]
    assert isinstance(k_bias, Tensor) and k_bias.abs().sum() == 0


def test_config_validation() -> None:
    assert not tiny_config().validate().has_error()
    bad = WhisperEncoderConfig(max_source_positions=75, output_layer=40)
    message = str(bad.validate())
    assert "multiple of 50" in message
    assert "`output_layer`" in message


def test_heads_must_divide_the_width() -> None:
    bad = replace(tiny_config(), model_dim=66, num_encoder_attn_heads=4)
    message = str(bad.validate())
    assert (
        "`model_dim` (66) must be divisible by `num_encoder_attn_heads` (4)" in message
    )


def test_sfm_frame_arithmetic_matches_the_extractor(ours: WhisperEncoder) -> None:
    extractor = WhisperSpeechFeatureExtractor(ours, max_windows=8)
    lengths = [160, 479, 480, 15_999, 16_000, 16_159, 16_160, 40_000]
    _, frames = extractor([speech_like(n, 0) for n in lengths])
    assert [extractor.num_frames(n) for n in lengths] == frames.tolist()

    for num_frames in (1, 2, 49, 50, 51, 100, 125):
        shortest = extractor.min_num_samples_for_frames(num_frames)
        assert extractor.num_frames(shortest) >= num_frames
        assert extractor.num_frames(shortest - 1) < num_frames
