"""SeamlessM4T-v2 features after the length adaptor (``length_adaptor``, archs
``*_adaptor``): parity with transformers' ``SeamlessM4Tv2SpeechEncoder``
(``last_hidden_state``, which includes the intermediate FFN and the adapter),
checkpoint keys of every layout, frame bookkeeping and the config's refusals.

The reference is the tiny, fully perturbed HF model behind the ``test_sm4t_*``
cards (one adaptor layer, kernel and stride 8 as in v2 large), and one built
here with two adaptor layers.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml
from fairseq2.assets import AssetStore
from fairseq2.models import load_model
from fairseq2.runtime.dependency import get_dependency_resolver
from torch import Tensor

from speechmapper_plugin.audio import AudioTooShortError
from speechmapper_plugin.models.sfm import check_encoder_name
from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4TSpeechEncoder,
    SM4TSpeechEncoderConfig,
    SpeechFeatureExtractor,
    convert_sm4t_speech_encoder_state_dict,
    create_sm4t_speech_encoder_model,
    get_sm4t_speech_encoder_hub,
)
from speechmapper_plugin.tiny_assets.sm4t import build_tiny_sm4t_v2
from tests.support.cards import SessionCards
from tests.support.sm4t import (
    SM4T_SEED,
    TINY_DIMS,
    hf_to_meta_state_dict,
    random_fbank,
    speech_like,
)
from tests.support.sm4t_fairseq1 import fairseq1_checkpoint, hf_to_fairseq1_state_dict

ATOL = 1e-5
END_TO_END_ATOL = 1e-3
NUM_LAYERS = TINY_DIMS["num_encoder_layers"]

CONFIG = SM4TSpeechEncoderConfig(
    **TINY_DIMS, output_layer=NUM_LAYERS, length_adaptor=True
)

# Converted in memory, and loaded through `load_model` from every checkpoint
# layout (HF safetensors, Meta fairseq2-0.2 `.pt`, Meta fairseq1 `.pt`).
SOURCES = ["converted", "test_sm4t_hf", "test_sm4t_meta", "test_sm4t_fairseq1"]

ADAPTOR_CARDS = {
    "seamless_m4t_v2_large_speech_encoder_adaptor": "hg://facebook/seamless-m4t-v2-large",
    "seamless_m4t_v2_large_speech_encoder_adaptor_meta": "https://huggingface.co/facebook/seamless-m4t-v2-large/resolve/main/seamlessM4T_v2_large.pt",
}


@pytest.fixture(scope="module")
def hf_model(test_cards: SessionCards) -> torch.nn.Module:
    from transformers import SeamlessM4Tv2Model

    return SeamlessM4Tv2Model.from_pretrained(test_cards.sm4t_hf_dir).eval()


def converted(
    hf: torch.nn.Module, config: SM4TSpeechEncoderConfig
) -> SM4TSpeechEncoder:
    model = create_sm4t_speech_encoder_model(config)
    state_dict = convert_sm4t_speech_encoder_state_dict(dict(hf.state_dict()), config)
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


@pytest.fixture(scope="module", params=SOURCES)
def ours(
    request: pytest.FixtureRequest, hf_model: torch.nn.Module
) -> SM4TSpeechEncoder:
    if request.param == "converted":
        return converted(hf_model, CONFIG)

    model = load_model(request.param, device=torch.device("cpu"), config=CONFIG)
    assert isinstance(model, SM4TSpeechEncoder)
    return model.eval()


@pytest.fixture(scope="module")
def loaded(hf_model: torch.nn.Module) -> SM4TSpeechEncoder:
    """Loaded through ``load_model`` from HF's sharded safetensors (the other
    layouts give the same tensors: see the key tests below)."""
    model = load_model("test_sm4t_hf", device=torch.device("cpu"), config=CONFIG)
    assert isinstance(model, SM4TSpeechEncoder)
    return model.eval()


@torch.no_grad()
def hf_encode(hf: torch.nn.Module, fbank: Tensor, mask: Tensor | None = None) -> Tensor:
    """transformers' speech encoder on our fbank rows stacked 2:1 (``[N, S, 160]``)."""
    stacked = fbank.reshape(fbank.size(0), fbank.size(1) // 2, 160)
    return hf.speech_encoder(stacked, attention_mask=mask).last_hidden_state  # type: ignore[no-any-return]


def hf_mask(frames: list[int]) -> Tensor:
    mask = torch.zeros(len(frames), max(frames), dtype=torch.long)
    for i, n in enumerate(frames):
        mask[i, :n] = 1
    return mask


def hf_adaptor_lengths(hf: torch.nn.Module, mask: Tensor) -> list[int]:
    """The adapter's own length rule (`_compute_sub_sample_lengths_from_attention_mask`)."""
    lengths = mask
    for layer in hf.speech_encoder.adapter.layers:
        lengths = layer._compute_sub_sample_lengths_from_attention_mask(lengths)
        lengths = hf_mask([int(n) for n in lengths.tolist()])
    return [int(n) for n in lengths.sum(1).tolist()]


# 151 frames (> 64 + 1 + 8: Shaw clipping on both sides), 20, 9, 1.
SINGLE_FRAMES = [151, 20, 9, 1]


@torch.no_grad()
def test_single_utterances_match_transformers(
    ours: SM4TSpeechEncoder, hf_model: torch.nn.Module
) -> None:
    for frames in SINGLE_FRAMES:
        fbank, layout = random_fbank([2 * frames], seed=frames)

        expected = hf_encode(hf_model, fbank)
        out, out_layout = ours(fbank, layout)

        # n // 8 + 1 frames: 151 -> 19, 20 -> 3, 9 -> 2, 1 -> 1.
        assert out.shape == expected.shape == (1, frames // 8 + 1, 64)
        assert list(out_layout.seq_lens) == [frames // 8 + 1]
        torch.testing.assert_close(out, expected, atol=ATOL, rtol=0)

    # Activations are far from trivial, so the tolerance means something.
    assert expected.abs().max() > 1.0


# Encoder frames of a padded batch. The last pooling window of a row of n
# frames spans frames up to 8 * (n // 8) + 3: inside the row for n % 8 >= 4,
# into the padding for n % 8 < 4 (81, 9).
BATCH_FRAMES = [151, 100, 81, 60, 9]


@torch.no_grad()
def test_padded_batch_matches_transformers(
    loaded: SM4TSpeechEncoder, hf_model: torch.nn.Module
) -> None:
    ours = loaded
    fbank, layout = random_fbank([2 * n for n in BATCH_FRAMES], seed=1)
    mask = hf_mask(BATCH_FRAMES)

    hf_batch = hf_encode(hf_model, fbank, mask)
    out, out_layout = ours(fbank, layout)

    lengths = list(out_layout.seq_lens)
    assert lengths == hf_adaptor_lengths(hf_model, mask) == [19, 13, 11, 8, 2]
    assert out.shape[:2] == hf_batch.shape[:2] == (5, 19)

    for i, (frames, n) in enumerate(zip(BATCH_FRAMES, lengths, strict=True)):
        alone = hf_encode(hf_model, fbank[i : i + 1, : 2 * frames])
        assert alone.shape[1] == n

        # Each row equals transformers on that utterance alone...
        diff = (out[i, :n] - alone[0]).abs().max().item()
        assert diff <= ATOL, f"row {i} ({frames} frames): {diff}"

        leak = (hf_batch[i, :n] - alone[0]).abs().max().item()
        if frames % 8 >= 4:
            # ...and transformers' batch too, where its pooling stays inside the row.
            assert leak <= ATOL, f"row {i}: {leak}"
        else:
            # transformers' batch pools the padding into the last frame (then
            # attention spreads it): the control that the zeroing matters.
            assert leak > 1e-3, f"row {i}: {leak}"


@torch.no_grad()
def test_two_adaptor_layers_match_transformers() -> None:
    hf = build_tiny_sm4t_v2(SM4T_SEED + 3, num_adapter_layers=2)
    model = converted(hf, replace(CONFIG, num_adaptor_layers=2))

    frames = [151, 70, 12]
    fbank, layout = random_fbank([2 * n for n in frames], seed=2)

    out, out_layout = model(fbank, layout)

    # (n // 8 + 1) // 8 + 1
    assert (
        list(out_layout.seq_lens)
        == hf_adaptor_lengths(hf, hf_mask(frames))
        == [3, 2, 1]
    )
    for i, n in enumerate(frames):
        alone = hf_encode(hf, fbank[i : i + 1, : 2 * n])
        m = out_layout.seq_lens[i]
        torch.testing.assert_close(out[i, :m], alone[0], atol=ATOL, rtol=0)


@torch.no_grad()
def test_end_to_end_from_waveform_matches_transformers(
    loaded: SM4TSpeechEncoder, hf_model: torch.nn.Module
) -> None:
    """Our fbank + encoder vs HF's feature extractor + speech encoder, per utterance."""
    ours = loaded
    from transformers import SeamlessM4TFeatureExtractor

    waveforms = [speech_like(48_000, seed=1), speech_like(16_000 + 2_345, seed=2)]

    extractor = SpeechFeatureExtractor(ours)
    features, lengths = extractor(waveforms)

    # 149 and 56 frames at 50 Hz.
    assert lengths.tolist() == [149 // 8 + 1, 56 // 8 + 1] == [19, 8]

    for i, waveform in enumerate(waveforms):
        inputs = SeamlessM4TFeatureExtractor()(
            [waveform.numpy()], sampling_rate=16_000, return_tensors="pt"
        )
        # HF pads an odd fbank length by half a frame; that frame is masked
        # but would be pooled (see the padded-batch test), so it is cut off.
        frames = int(inputs["attention_mask"].sum())
        expected = hf_model.speech_encoder(
            inputs["input_features"][:, :frames]
        ).last_hidden_state[0]
        n = lengths[i].item()
        assert expected.shape[0] == n
        diff = (features[i, :n] - expected).abs().max().item()
        assert diff <= END_TO_END_ATOL, f"row {i}: {diff}"
        assert features[i, n:].abs().sum() == 0  # padding is zeroed


def test_frame_bookkeeping_counts_the_adaptor_frames(hf_model: torch.nn.Module) -> None:
    extractor = SpeechFeatureExtractor(converted(hf_model, CONFIG))

    assert extractor.frame_rate == 6.25
    assert (
        SpeechFeatureExtractor(extractor.model, frame_averaging=2).frame_rate == 3.125
    )

    # Hand-worked: 560 samples = 2 fbank frames = 1 encoder frame -> 1 frame;
    # 2 frames need 8 encoder frames = 16 fbank frames = 400 + 15 * 160 samples.
    assert extractor.min_num_samples == 560
    assert [extractor.min_num_samples_for_frames(k) for k in (1, 2, 3)] == [
        560,
        2_800,
        400 + 31 * 160,
    ]
    for k in (1, 2, 3, 7):
        shortest = extractor.min_num_samples_for_frames(k)
        assert extractor.num_frames(shortest) >= k > extractor.num_frames(shortest - 1)

    # What the extractor reports is what it returns.
    sizes = [560, 2_799, 2_800, 16_000, 16_000 + 2_345, 48_000]
    waveforms = [speech_like(n, seed=i) for i, n in enumerate(sizes)]
    _, lengths = extractor(waveforms)
    assert lengths.tolist() == [extractor.num_frames(n) for n in sizes]
    assert lengths.tolist() == [1, 1, 2, 7, 8, 19]

    with pytest.raises(AudioTooShortError):
        extractor([speech_like(559)])


def test_adaptor_archs_and_cards() -> None:
    hub = get_sm4t_speech_encoder_hub()

    tiny = hub.get_arch_config("tiny_adaptor")
    assert tiny == replace(hub.get_arch_config("tiny"), length_adaptor=True)

    large = hub.get_arch_config("large_adaptor")
    assert large == replace(hub.get_arch_config("large"), length_adaptor=True)
    assert not large.validate().has_error()
    assert (large.adaptor_kernel_size, large.adaptor_stride) == (8, 8)
    assert large.num_adaptor_layers == 1

    store = get_dependency_resolver().resolve(AssetStore)  # type: ignore[type-abstract]
    for name, checkpoint in ADAPTOR_CARDS.items():
        card = store.retrieve_card(name)
        assert card.field("checkpoint").as_(str) == checkpoint
        assert hub.get_model_config(name) == large


def test_adaptor_card_file_holds_the_adaptor_cards(repo_root: Path) -> None:
    file = repo_root / "assets" / "models" / "seamless_m4t_v2_adaptor.yaml"
    names = {doc["name"] for doc in yaml.safe_load_all(file.read_text())}
    assert names == set(ADAPTOR_CARDS)
    assert all("_adaptor" in name for name in names)

    import fairseq2

    bundled = Path(fairseq2.__file__).parent / "assets" / "cards"
    for other in bundled.rglob("*.yaml"):
        for doc in yaml.safe_load_all(other.read_text()):
            assert not doc or doc.get("name") not in names, other


def test_large_adaptor_has_the_shapes_of_transformers_large() -> None:
    """Every tensor of HF's v2-large speech encoder (default config) converts
    onto ``large_adaptor`` with its shape, and nothing is missing."""
    from transformers import SeamlessM4Tv2Config
    from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import (
        SeamlessM4Tv2SpeechEncoder,
    )

    config = get_sm4t_speech_encoder_hub().get_arch_config("large_adaptor")

    with torch.device("meta"):
        hf = SeamlessM4Tv2SpeechEncoder(SeamlessM4Tv2Config())
        model = create_sm4t_speech_encoder_model(config)

    hf_state = {f"speech_encoder.{k}": v for k, v in hf.state_dict().items()}
    state = convert_sm4t_speech_encoder_state_dict(hf_state, config)
    ours = model.state_dict()

    assert state.keys() == ours.keys()
    for key, value in state.items():
        assert value.shape == ours[key].shape, key  # type: ignore[attr-defined]

    # The adaptor adds 54.56M parameters to the 580.49M of `large`.
    num_params = sum(p.numel() for p in model.parameters())
    assert num_params == sum(v.numel() for v in hf.state_dict().values())
    assert round(num_params / 1e6, 2) == 635.05


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"output_layer": 2}, "`output_layer` must be 4"),
        ({"output_layer_norm": False}, "`output_layer_norm` must be true"),
        ({"adaptor_stride": 0}, "`adaptor_stride` must be positive"),
        ({"num_adaptor_layers": 0}, "`num_adaptor_layers` must be positive"),
    ],
)
def test_meaningless_adaptor_configs_are_refused(
    overrides: dict[str, object], message: str
) -> None:
    result = replace(CONFIG, **overrides).validate()  # type: ignore[arg-type]

    assert result.has_error()
    assert re.search(message, str(result)), str(result)

    # Without the adaptor, the same layer choices are fine.
    if "output_layer" in overrides or "output_layer_norm" in overrides:
        assert (
            not replace(CONFIG, length_adaptor=False, **overrides)
            .validate()
            .has_error()
        )  # type: ignore[arg-type]


def test_other_layers_are_refused_at_call_time(hf_model: torch.nn.Module) -> None:
    model = converted(hf_model, CONFIG)
    fbank, layout = random_fbank([40])

    for layer, layer_norm in [(2, True), (NUM_LAYERS, False)]:
        with pytest.raises(ValueError, match="after SeamlessM4T's length adaptor"):
            model(fbank, layout, layer=layer, layer_norm=layer_norm)

        with pytest.raises(ValueError, match="after SeamlessM4T's length adaptor"):
            SpeechFeatureExtractor(model, layer=layer, layer_norm=layer_norm)

    extractor = SpeechFeatureExtractor(model)
    assert (extractor.layer, extractor.layer_norm) == (NUM_LAYERS, True)


# Checkpoint keys.


@pytest.fixture(scope="module")
def hf_state(hf_model: torch.nn.Module) -> dict[str, Tensor]:
    return dict(hf_model.state_dict())


def test_every_layout_converts_to_the_same_adaptor_tensors(
    hf_state: dict[str, Tensor],
) -> None:
    from_hf = convert_sm4t_speech_encoder_state_dict(dict(hf_state), CONFIG)
    others = {
        "meta": {"model": hf_to_meta_state_dict(hf_state)},
        "fairseq1": fairseq1_checkpoint(hf_to_fairseq1_state_dict(hf_state)),
    }

    assert (
        from_hf.keys() == create_sm4t_speech_encoder_model(CONFIG).state_dict().keys()
    )

    # HF `speech_encoder.inner_layer_norm` is after the adaptor.
    assert torch.equal(
        from_hf["length_adaptor.layer_norm.weight"],  # type: ignore[arg-type]
        hf_state["speech_encoder.inner_layer_norm.weight"],
    )

    for name, checkpoint in others.items():
        state = convert_sm4t_speech_encoder_state_dict(checkpoint, CONFIG)
        assert state.keys() == from_hf.keys(), name
        for key, value in from_hf.items():
            assert torch.equal(value, state[key]), f"{name}: {key}"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fmt", "bad_key"),
    [
        # A Conformer adaptor (`use_conformer_adaptor`), not v2's.
        ("fairseq1", "encoder.adaptor.layers.0.conv_pool.1.weight"),
        ("fairseq1", "encoder.adaptor.layers.0.attn_pool.0.weight"),
        ("hf", "speech_encoder.adapter.layers.0.self_attn.linear_pos.weight"),
        ("meta", "speech_encoder.adaptor_layers.0.block.ffn1.inner_proj.weight"),
    ],
)
def test_unexpected_adaptor_key_raises_naming_it(
    hf_state: dict[str, Tensor], fmt: str, bad_key: str
) -> None:
    state: dict[str, Tensor] = {
        "hf": dict(hf_state),
        "meta": hf_to_meta_state_dict(hf_state),
        "fairseq1": dict(hf_to_fairseq1_state_dict(hf_state)),
    }[fmt]
    state[bad_key] = torch.zeros(1)

    for config in (CONFIG, replace(CONFIG, length_adaptor=False)):
        with pytest.raises(ValueError, match=re.escape(f"`{bad_key}`")):
            convert_sm4t_speech_encoder_state_dict({"model": state}, config)


def test_checkpoint_without_adaptor_is_explained(hf_state: dict[str, Tensor]) -> None:
    no_adaptor = {
        k: v
        for k, v in hf_state.items()
        if not k.startswith(
            ("speech_encoder.adapter.", "speech_encoder.intermediate_ffn.")
        )
        and k != "speech_encoder.inner_layer_norm.weight"
        and k != "speech_encoder.inner_layer_norm.bias"
    }

    with pytest.raises(ValueError, match="no length adaptor weights"):
        convert_sm4t_speech_encoder_state_dict(no_adaptor, CONFIG)

    with pytest.raises(
        ValueError, match="has 1 length adaptor layers.*num_adaptor_layers=2"
    ):
        convert_sm4t_speech_encoder_state_dict(
            dict(hf_state), replace(CONFIG, num_adaptor_layers=2)
        )


def test_encoder_name_must_say_whether_features_are_after_the_adaptor(
    hf_model: torch.nn.Module,
) -> None:
    """A store records its encoder by name; the extraction recipe refuses names
    that misstate the adaptor (e.g. a `length_adaptor` override on the 50 Hz card)."""
    with_adaptor = converted(hf_model, CONFIG)
    without = converted(hf_model, replace(CONFIG, length_adaptor=False))

    check_encoder_name(with_adaptor, "seamless_m4t_v2_large_speech_encoder_adaptor")
    check_encoder_name(without, "seamless_m4t_v2_large_speech_encoder")

    with pytest.raises(ValueError, match="does not say `adaptor`"):
        check_encoder_name(with_adaptor, "seamless_m4t_v2_large_speech_encoder")

    with pytest.raises(ValueError, match="without SeamlessM4T's length adaptor"):
        check_encoder_name(without, "seamless_m4t_v2_large_speech_encoder_adaptor")


@torch.no_grad()
def test_the_test_adaptor_card_loads_adaptor_features(
    hf_model: torch.nn.Module,
) -> None:
    """The grid's SeamlessM4T-adaptor column: the card's arch alone (no config
    override) gives the adaptor's 6.25 Hz features of the same file."""
    model = load_model("test_sm4t_hf_adaptor", device=torch.device("cpu"))
    assert isinstance(model, SM4TSpeechEncoder)
    assert model.config.length_adaptor

    fbank, layout = random_fbank([2 * 60], seed=60)
    out, out_layout = model.eval()(fbank, layout)
    assert list(out_layout.seq_lens) == [60 // 8 + 1]
    torch.testing.assert_close(out, hf_encode(hf_model, fbank), atol=ATOL, rtol=0)
