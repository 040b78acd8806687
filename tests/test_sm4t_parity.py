"""Parity of the SeamlessM4T-v2 speech encoder with transformers' ``SeamlessM4Tv2Model``.

The reference is a tiny, fully perturbed HF model (the one behind the
``test_sm4t_*`` cards). Sequences are longer than 64 + 1 + 8 frames, so Shaw
position clipping is exercised on both sides.
"""

from __future__ import annotations

import pytest
import torch
from fairseq2.models import load_model

from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4TSpeechEncoder,
    SM4TSpeechEncoderConfig,
    SpeechFeatureExtractor,
    convert_sm4t_speech_encoder_state_dict,
    create_sm4t_speech_encoder_model,
)
from tests.support.cards import SessionCards
from tests.support.sm4t import TINY_DIMS, hf_speech_layers, random_fbank, speech_like

LAYER_ATOL = 1e-5
END_TO_END_ATOL = 1e-3
NUM_LAYERS = TINY_DIMS["num_encoder_layers"]

# (source, shaw_sdpa): converted in memory with both attention implementations,
# and loaded through `load_model` from every checkpoint layout (HF safetensors,
# Meta fairseq2-0.2 `.pt`, Meta fairseq1 full-pickle `.pt`).
SOURCES = [
    ("converted", "fairseq2"),
    ("converted", "gathered"),
    ("test_sm4t_hf", "gathered"),
    ("test_sm4t_meta", "gathered"),
    ("test_sm4t_meta", "fairseq2"),
    ("test_sm4t_fairseq1", "gathered"),
]


@pytest.fixture(scope="module")
def hf_model(test_cards: SessionCards) -> torch.nn.Module:
    from transformers import SeamlessM4Tv2Model

    return SeamlessM4Tv2Model.from_pretrained(test_cards.sm4t_hf_dir).eval()


def tiny_config(shaw_sdpa: str) -> SM4TSpeechEncoderConfig:
    return SM4TSpeechEncoderConfig(
        **TINY_DIMS, output_layer=NUM_LAYERS, shaw_sdpa=shaw_sdpa
    )


@pytest.fixture(scope="module", params=SOURCES, ids=["-".join(s) for s in SOURCES])
def ours(
    request: pytest.FixtureRequest, hf_model: torch.nn.Module
) -> SM4TSpeechEncoder:
    source, shaw_sdpa = request.param
    config = tiny_config(shaw_sdpa)

    if source == "converted":
        model = create_sm4t_speech_encoder_model(config)
        state_dict = convert_sm4t_speech_encoder_state_dict(
            dict(hf_model.state_dict()), config
        )
        model.load_state_dict(state_dict, strict=True)
    else:
        model = load_model(source, device=torch.device("cpu"), config=config)

    assert isinstance(model, SM4TSpeechEncoder)
    return model.eval()


@torch.no_grad()
def test_every_layer_matches_transformers(
    ours: SM4TSpeechEncoder, hf_model: torch.nn.Module
) -> None:
    fbank, layout = random_fbank([302, 302])  # 151 frames > 64 + 1 + 8
    stacked = fbank.reshape(2, 151, 160)

    hf_raw, hf_normed, hf_frontend = hf_speech_layers(hf_model, stacked)

    seqs, seqs_layout = ours.run_frontend(fbank, layout)
    torch.testing.assert_close(seqs, hf_frontend, atol=LAYER_ATOL, rtol=0)

    outputs = list(ours.iter_layer_outputs(seqs, seqs_layout, num_layers=NUM_LAYERS))
    assert len(outputs) == NUM_LAYERS
    for layer, (a, b) in enumerate(zip(outputs, hf_raw, strict=True), start=1):
        assert (a - b).abs().max().item() <= LAYER_ATOL, f"layer {layer}"

    raw, _ = ours(fbank, layout, layer=NUM_LAYERS, layer_norm=False)
    normed, _ = ours(fbank, layout)  # default: last layer, LayerNorm'd
    torch.testing.assert_close(raw, hf_raw[-1], atol=LAYER_ATOL, rtol=0)
    torch.testing.assert_close(normed, hf_normed, atol=LAYER_ATOL, rtol=0)

    # Activations are far from trivial, so the tolerance means something.
    assert hf_normed.abs().max() > 1.0


@torch.no_grad()
def test_padded_batch_matches_transformers_with_mask(
    ours: SM4TSpeechEncoder, hf_model: torch.nn.Module
) -> None:
    lengths = [302, 210, 160]
    fbank, layout = random_fbank(lengths, seed=1)
    stacked = fbank.reshape(3, 151, 160)
    mask = torch.zeros(3, 151, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, : n // 2] = 1

    hf_raw, hf_normed, _ = hf_speech_layers(hf_model, stacked, mask)

    for layer in range(1, NUM_LAYERS + 1):
        out, out_layout = ours(fbank, layout, layer=layer, layer_norm=False)
        assert list(out_layout.seq_lens) == [n // 2 for n in lengths]
        for i, n in enumerate(lengths):
            diff = (out[i, : n // 2] - hf_raw[layer - 1][i, : n // 2]).abs().max()
            assert diff.item() <= LAYER_ATOL, f"layer {layer}, row {i}"

    normed, _ = ours(fbank, layout)
    for i, n in enumerate(lengths):
        diff = (normed[i, : n // 2] - hf_normed[i, : n // 2]).abs().max()
        assert diff.item() <= LAYER_ATOL


@pytest.mark.parametrize("layer_norm", [True, False])
@torch.no_grad()
def test_end_to_end_from_waveform_matches_transformers(
    ours: SM4TSpeechEncoder, hf_model: torch.nn.Module, layer_norm: bool
) -> None:
    """Our fbank front end + encoder vs HF's feature extractor (with its mask) + encoder."""
    from transformers import SeamlessM4TFeatureExtractor

    # 3 s (149 frames), and an odd fbank length so HF pads a half frame.
    waveforms = [speech_like(48_000, seed=1), speech_like(16_000 + 2_345, seed=2)]

    extractor = SpeechFeatureExtractor(ours, layer=NUM_LAYERS, layer_norm=layer_norm)
    features, lengths = extractor(waveforms)

    inputs = SeamlessM4TFeatureExtractor()(
        [w.numpy() for w in waveforms],
        sampling_rate=16_000,
        padding=True,
        return_tensors="pt",
    )
    hf_raw, hf_normed, _ = hf_speech_layers(
        hf_model, inputs["input_features"], inputs["attention_mask"]
    )
    expected = hf_normed if layer_norm else hf_raw[-1]

    assert lengths.tolist() == inputs["attention_mask"].sum(1).tolist() == [149, 56]
    for i, n in enumerate(lengths.tolist()):
        diff = (features[i, :n] - expected[i, :n]).abs().max().item()
        assert diff <= END_TO_END_ATOL, f"row {i}: {diff}"
