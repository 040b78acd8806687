"""The SpeechMapper projector: lengths, masking, batching and configuration."""

from __future__ import annotations

import pytest
import torch
from fairseq2.nn import BatchLayout
from fairseq2.utils.validation import StandardObjectValidator, ValidationError

from speechmapper_plugin.models.speechmapper import (
    ProjectorBlockConfig,
    ProjectorInputTooShortError,
    SpeechMapperConfig,
    SpeechMapperProjector,
    check_llm_embedding_dim,
    create_speechmapper_model,
)
from speechmapper_plugin.models.speechmapper.interop import (
    convert_speechmapper_state_dict,
)


def small_config(
    *, frame_averaging: int = 2, conv_padding: int = 0
) -> SpeechMapperConfig:
    """The paper's conv geometry (k6 s2, two blocks) at a width that runs fast."""
    block = ProjectorBlockConfig(
        model_dim=8,
        output_dim=8,
        num_layers=1,
        num_attn_heads=2,
        ffn_inner_dim=16,
        conv_padding=conv_padding,
    )
    return SpeechMapperConfig(
        input_dim=8,
        frame_averaging=frame_averaging,
        blocks=[block, ProjectorBlockConfig(**{**block.__dict__, "output_dim": 12})],
        output_dim=6,
        dropout_p=0.0,
        max_input_frames=2000,
    )


def build(config: SpeechMapperConfig) -> SpeechMapperProjector:
    torch.manual_seed(0)
    return create_speechmapper_model(config).eval()


@pytest.mark.parametrize(("frame_averaging", "conv_padding"), [(2, 0), (1, 0), (2, 3)])
def test_output_lengths_match_module_for_every_length(
    frame_averaging: int, conv_padding: int
) -> None:
    config = small_config(frame_averaging=frame_averaging, conv_padding=conv_padding)
    model = build(config)

    lengths = torch.arange(1, 2001)
    predicted = model.output_lengths(lengths)

    assert predicted.tolist() == [config.max_output_length(n) for n in range(1, 2001)]

    shortest = config.min_input_frames()
    assert int(predicted[shortest - 1]) == 1
    if shortest > 1:
        assert int(predicted[shortest - 2]) == 0

    with torch.no_grad():
        for n in range(1, 2001):
            x = torch.randn(1, n, config.input_dim)
            expected = int(predicted[n - 1])
            if expected == 0:
                with pytest.raises(ProjectorInputTooShortError, match=f"{n} frames"):
                    model(x, BatchLayout.of(x))
                continue
            y, layout = model(x, BatchLayout.of(x))
            assert y.shape == (1, expected, config.output_dim), n
            assert list(layout.seq_lens) == [expected]


def test_pre_averaged_lengths() -> None:
    config = small_config()
    for n in range(1, 500):
        assert config.max_output_length(
            n // 2, pre_averaged=True
        ) == config.max_output_length(n)
    assert config.min_input_frames() == 2 * config.min_input_frames(pre_averaged=True)


def test_batched_equals_one_by_one_and_padding_never_leaks() -> None:
    config = small_config()
    model = build(config)

    lengths = [401, 250, 64, 37]
    singles = [torch.randn(1, n, config.input_dim) for n in lengths]

    batch = torch.full((len(lengths), max(lengths), config.input_dim), float("nan"))
    for i, x in enumerate(singles):
        batch[i, : lengths[i]] = x[0]

    with torch.no_grad():
        y, layout = model(batch, BatchLayout.of(batch, lengths))
        for i, x in enumerate(singles):
            y_single, single_layout = model(x, BatchLayout.of(x))
            n = single_layout.seq_lens[0]
            assert layout.seq_lens[i] == n
            torch.testing.assert_close(y[i, :n], y_single[0], atol=1e-5, rtol=1e-5)


def test_pre_averaged_input_equals_raw_input() -> None:
    config = small_config()
    model = build(config)
    x = torch.randn(2, 300, config.input_dim)
    lens = [300, 211]
    averaged = x.reshape(2, 150, 2, config.input_dim).mean(2)

    with torch.no_grad():
        y_raw, layout_raw = model(x, BatchLayout.of(x, lens))
        y_avg, layout_avg = model(
            averaged,
            BatchLayout.of(averaged, [n // 2 for n in lens]),
            pre_averaged=True,
        )

    assert list(layout_raw.seq_lens) == list(layout_avg.seq_lens)
    for i, n in enumerate(layout_raw.seq_lens):
        torch.testing.assert_close(y_raw[i, :n], y_avg[i, :n], atol=1e-5, rtol=1e-5)


def test_gradients_reach_only_valid_input_frames() -> None:
    config = small_config()
    model = build(config)
    x = torch.randn(2, 200, config.input_dim, requires_grad=True)
    lens = [200, 120]

    y, layout = model(x, BatchLayout.of(x, lens))
    valid = torch.arange(y.size(1)).unsqueeze(0) < layout.seq_lens_pt.unsqueeze(1)
    (y * valid.unsqueeze(-1)).sum().backward()

    assert x.grad is not None
    assert torch.all(x.grad[1, 120:] == 0)
    assert torch.any(x.grad[1, :100] != 0)


def test_empty_batch_row_is_a_clear_error() -> None:
    model = build(small_config())
    x = torch.randn(3, 100, 8)
    with pytest.raises(ProjectorInputTooShortError) as info:
        model(x, BatchLayout.of(x, [100, 10, 5]))
    assert info.value.rows == [1, 2]
    assert "row 1: 10 frames" in str(info.value)


def test_too_long_input_is_a_clear_error() -> None:
    config = small_config()
    model = build(config)
    x = torch.randn(1, config.max_input_frames + 2, config.input_dim)
    with pytest.raises(ValueError, match="max_input_frames"):
        model(x, BatchLayout.of(x))


def test_wrong_feature_width_is_a_clear_error() -> None:
    model = build(small_config())
    x = torch.randn(1, 100, 5)
    with pytest.raises(ValueError, match=r"\[batch, frames, 8\]"):
        model(x, BatchLayout.of(x))


def validation_error(config: object) -> str:
    with pytest.raises(ValidationError) as info:
        StandardObjectValidator().validate(config)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"input_dim": 0}, "input_dim"),
        ({"output_dim": -4}, "output_dim"),
        ({"frame_averaging": 0}, "frame_averaging"),
        ({"blocks": []}, "blocks"),
    ],
)
def test_bad_config_names_the_field(change: dict[str, object], field: str) -> None:
    config = SpeechMapperConfig(**change)  # type: ignore[arg-type]
    assert field in validation_error(config)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model_dim": 0}, "model_dim"),
        ({"output_dim": 0}, "output_dim"),
        ({"num_attn_heads": 3}, "num_attn_heads"),
        ({"conv_stride": 0}, "conv_stride"),
        ({"conv_kernel_size": 0}, "conv_kernel_size"),
        ({"conv_padding": 6}, "conv_padding"),
    ],
)
def test_bad_block_config_names_the_field(
    change: dict[str, object], field: str
) -> None:
    block = ProjectorBlockConfig(model_dim=64, output_dim=64, num_attn_heads=4)
    config = SpeechMapperConfig(
        blocks=[ProjectorBlockConfig(**{**block.__dict__, **change})]
    )
    message = validation_error(config)
    assert "blocks[0]" in message and field in message


def test_kernel_and_stride_that_leave_no_output_are_rejected() -> None:
    block = ProjectorBlockConfig(
        model_dim=8,
        output_dim=8,
        num_attn_heads=2,
        conv_kernel_size=600,
        conv_stride=50,
    )
    config = SpeechMapperConfig(
        input_dim=8, blocks=[block, block], output_dim=8, max_input_frames=1000
    )
    message = validation_error(config)
    assert "`blocks`" in message and "max_input_frames" in message


def test_output_width_must_match_the_target_llm() -> None:
    config = SpeechMapperConfig(output_dim=2048)
    with pytest.raises(ValueError, match="output_dim") as info:
        check_llm_embedding_dim(config, 4096, "llama3_1_8b_instruct")
    assert "\n" not in str(info.value)

    retargeted = config.with_output_dim(4096)
    check_llm_embedding_dim(retargeted, 4096)
    assert retargeted.blocks == config.blocks


def test_paper_architecture_has_the_documented_parameter_count() -> None:
    """``SpeechMapperConfig``'s docstring and the README state 279.1M (output_dim=4096)."""
    with torch.device("meta"):
        model = create_speechmapper_model(SpeechMapperConfig(output_dim=4096))

    assert sum(p.numel() for p in model.parameters()) == 279_134_208


def test_ddp_prefix_and_model_nesting_are_stripped_on_load() -> None:
    config = small_config()
    model = build(config)
    expected = model.state_dict()

    ddp = {f"module.{k}": v.clone() for k, v in expected.items()}
    for saved in (ddp, {"model": ddp}, {"model": dict(expected)}, dict(expected)):
        keys_before = list(saved)
        state = convert_speechmapper_state_dict(saved, config)

        assert list(saved) == keys_before  # the caller's dict is left alone
        assert sorted(state) == sorted(expected)
        fresh = create_speechmapper_model(config)
        fresh.load_state_dict(state, strict=True)
        for key, value in fresh.state_dict().items():
            torch.testing.assert_close(value, expected[key])


def test_a_bf16_projector_takes_float32_features() -> None:
    """Static mixed precision (and FSDP's unsharded bf16 parameters) run the
    projector in bf16 on the float32 features of a store; the full-size
    rehearsal's stage 2 stopped at validation with 'Input type (float) and
    bias type (c10::BFloat16) should be the same'."""
    config = small_config()
    reference = build(config)
    model = build(config).to(torch.bfloat16)

    features = torch.randn(2, 120, config.input_dim)
    layout = BatchLayout.of(features, [120, 90])
    with torch.no_grad():
        out, out_layout = model(features, layout)
        expected, _ = reference(features, layout)

    assert out.dtype == torch.bfloat16
    n = int(out_layout.seq_lens[1])
    # bf16 keeps about 3 significant digits: the same outputs, not new ones.
    torch.testing.assert_close(out[1, :n].float(), expected[1, :n], atol=0.1, rtol=0.05)
