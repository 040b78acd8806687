"""Reads the speech encoder out of the SeamlessM4T-v2 checkpoint layouts.

- Meta's released ``seamlessM4T_v2_large.pt`` in the **fairseq1** layout:
  ``{"model": state_dict, "cfg"/"args": ..., ...}`` with the speech encoder
  under ``encoder.w2v_encoder.w2v_model.*``. seamless_communication converts
  these keys at load time (``src/seamless_communication/models/unity/
  loader.py``, ``UnitYLoader._fairseq_key_map``, whose ``encoder_key`` is
  ``encoder`` for a model with a T2U decoder such as v2 large; ``ggml/
  ggml_convert.py`` notes that "the current default in SC is to convert from
  fairseq1 ckpt format"). Verified against that source only, not the file.
- Meta's fairseq2-0.2 layout (what ``UnitYLoader`` produces, and what a
  re-saved seamless_communication model holds): ``speech_encoder_frontend.*``,
  ``speech_encoder.inner.*`` and ``speech_encoder.inner_layer_norm.*``.
  Sub-module names equal fairseq2 0.8.1's, so only the prefixes change.
- Hugging Face ``SeamlessM4Tv2Model`` safetensors: ``speech_encoder.*`` with
  transformers' module names.
- Checkpoints saved from :class:`SM4TSpeechEncoder` itself pass through.

Trap: the name ``inner_layer_norm`` means different LayerNorms in the
formats. fairseq2-0.2's ``speech_encoder.inner_layer_norm`` (after the last
Conformer block) is fairseq1's ``encoder.w2v_encoder.w2v_model.encoder.
layer_norm`` and HF's ``speech_encoder.encoder.layer_norm``; HF's
``speech_encoder.inner_layer_norm`` is fairseq2-0.2's ``speech_encoder.
layer_norm`` and fairseq1's ``encoder.adaptor.out_ln`` (after the length
adaptor), which we drop.

Everything outside the speech encoder (text encoder/decoder, T2U model,
vocoder) and the speech-encoder parts after ``inner_layer_norm`` (the
``proj1``/``proj2`` FFN, HF ``intermediate_ffn``, the length adaptor) is
dropped by explicit pattern; any other key raises ``ValueError`` naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from speechmapper_plugin.models.sm4t_speech_encoder.config import (
    SM4TSpeechEncoderConfig,
)
from speechmapper_plugin.models.speech_encoder import (
    encoder_layer_indices,
    unwrap_checkpoint,
)

_P: Final = r"(?:weight|bias)"  # parameter leaf names


@dataclass(frozen=True)
class CheckpointFormat:
    """The key rules of one checkpoint format."""

    name: str

    renames: tuple[tuple[re.Pattern[str], str], ...]
    """``(pattern, replacement)``: keys we load and their fairseq2 names."""

    drops: tuple[re.Pattern[str], ...]
    """Keys we know and deliberately skip."""

    def convert_key(self, key: str) -> str | None:
        """The fairseq2 name of ``key``, ``None`` if it is dropped.

        :raises ValueError: if ``key`` is neither loaded nor known to be skipped.
        """
        for pattern, replacement in self.renames:
            if pattern.fullmatch(key):
                return pattern.sub(replacement, key)

        if any(pattern.match(key) for pattern in self.drops):
            return None

        raise ValueError(
            f"Unexpected key `{key}` in a {self.name} SeamlessM4T checkpoint: it is neither a speech-encoder weight nor a known part of the model to skip. The checkpoint may be of a different architecture (e.g. SeamlessM4T v1, whose Conformer has BatchNorm convolutions and Transformer-XL relative attention)."
        )


def _compile(
    renames: Iterable[tuple[str, str]], drops: Iterable[str]
) -> tuple[tuple[tuple[re.Pattern[str], str], ...], tuple[re.Pattern[str], ...]]:
    return (
        tuple((re.compile(p), r) for p, r in renames),
        tuple(re.compile(p) for p in drops),
    )


# The names inside one Conformer block in fairseq2 (0.2 and 0.8.1 alike).
_BLOCK_PARAMS: Final = (
    rf"(?:ffn[12]_layer_norm\.{_P}"
    rf"|ffn[12]\.(?:inner_proj|output_proj)\.{_P}"
    rf"|self_attn_layer_norm\.{_P}"
    rf"|self_attn\.(?:q_proj|k_proj|v_proj|output_proj)\.{_P}"
    r"|self_attn\.sdpa\.rel_k_embed\.weight"
    rf"|conv_layer_norm\.{_P}"
    r"|conv\.(?:pointwise_conv1|depthwise_conv|pointwise_conv2)\.weight"
    rf"|conv\.layer_norm\.{_P}"
    rf"|layer_norm\.{_P})"
)

_FRONTEND_PARAMS: Final = rf"(?:post_extract_layer_norm|model_dim_proj)\.{_P}"

NATIVE_FORMAT: Final = CheckpointFormat(
    "fairseq2 (speechmapper)",
    *_compile(
        [
            (rf"encoder_frontend\.({_FRONTEND_PARAMS})", r"encoder_frontend.\1"),
            (rf"encoder\.layers\.([0-9]+)\.({_BLOCK_PARAMS})", r"encoder.layers.\1.\2"),
            (rf"inner_layer_norm\.({_P})", r"inner_layer_norm.\1"),
        ],
        [],
    ),
)

META_FORMAT: Final = CheckpointFormat(
    "Meta fairseq2-0.2 (seamless_communication UnitYModel)",
    *_compile(
        [
            (
                rf"speech_encoder_frontend\.({_FRONTEND_PARAMS})",
                r"encoder_frontend.\1",
            ),
            (
                rf"speech_encoder\.inner\.layers\.([0-9]+)\.({_BLOCK_PARAMS})",
                r"encoder.layers.\1.\2",
            ),
            # The LayerNorm after the last Conformer block.
            (rf"speech_encoder\.inner_layer_norm\.({_P})", r"inner_layer_norm.\1"),
        ],
        [
            # Speech-encoder parts after `inner_layer_norm`.
            r"speech_encoder\.proj1\.",
            r"speech_encoder\.proj2\.",
            r"speech_encoder\.adaptor_layers\.",
            r"speech_encoder\.layer_norm\.",  # after the adaptor
            # The rest of UnitY.
            r"text_encoder_frontend\.",
            r"text_encoder\.",
            r"text_decoder_frontend\.",
            r"text_decoder\.",
            r"final_proj\.",
            r"t2u_model\.",
        ],
    ),
)

_W2V: Final = r"encoder\.w2v_encoder\.w2v_model\."
_W2V_LAYER: Final = _W2V + r"encoder\.layers\.([0-9]+)\."

FAIRSEQ1_FORMAT: Final = CheckpointFormat(
    "Meta fairseq1 (seamlessM4T_v2_large.pt)",
    *_compile(
        [
            (
                rf"{_W2V}layer_norm\.({_P})",
                r"encoder_frontend.post_extract_layer_norm.\1",
            ),
            (
                rf"{_W2V}post_extract_proj\.({_P})",
                r"encoder_frontend.model_dim_proj.\1",
            ),
            # The LayerNorm after the last Conformer block (seamless moves it
            # to `speech_encoder.inner_layer_norm` for Conformer encoders).
            (rf"{_W2V}encoder\.layer_norm\.({_P})", r"inner_layer_norm.\1"),
            (
                rf"{_W2V_LAYER}ffn([12])\.layer_norm\.({_P})",
                r"encoder.layers.\1.ffn\2_layer_norm.\3",
            ),
            (
                rf"{_W2V_LAYER}ffn([12])\.w_1\.({_P})",
                r"encoder.layers.\1.ffn\2.inner_proj.\3",
            ),
            (
                rf"{_W2V_LAYER}ffn([12])\.w_2\.({_P})",
                r"encoder.layers.\1.ffn\2.output_proj.\3",
            ),
            (
                rf"{_W2V_LAYER}self_attn_layer_norm\.({_P})",
                r"encoder.layers.\1.self_attn_layer_norm.\2",
            ),
            # seamless accepts both ESPnet (`linear_*`) and fairseq
            # (`*_proj`, `out_proj`) attention names.
            (
                rf"{_W2V_LAYER}self_attn\.(?:linear_([qkv])|([qkv])_proj)\.({_P})",
                r"encoder.layers.\1.self_attn.\2\3_proj.\4",
            ),
            (
                rf"{_W2V_LAYER}self_attn\.(?:linear_out|out_proj)\.({_P})",
                r"encoder.layers.\1.self_attn.output_proj.\2",
            ),
            (
                rf"{_W2V_LAYER}self_attn\.rel_k_embedding\.weight",
                r"encoder.layers.\1.self_attn.sdpa.rel_k_embed.weight",
            ),
            # `conv_module.layer_norm` is before the convolution module,
            # `conv_module.layer_norm2` after the depthwise convolution.
            (
                rf"{_W2V_LAYER}conv_module\.layer_norm\.({_P})",
                r"encoder.layers.\1.conv_layer_norm.\2",
            ),
            (
                rf"{_W2V_LAYER}conv_module\.layer_norm2\.({_P})",
                r"encoder.layers.\1.conv.layer_norm.\2",
            ),
            (
                rf"{_W2V_LAYER}conv_module\.(pointwise_conv1|depthwise_conv|pointwise_conv2)\.weight",
                r"encoder.layers.\1.conv.\2.weight",
            ),
            (
                rf"{_W2V_LAYER}final_layer_norm\.({_P})",
                r"encoder.layers.\1.layer_norm.\2",
            ),
        ],
        [
            # Remnant of w2v-BERT pre-training (seamless deletes it).
            rf"{_W2V}mask_emb$",
            # Speech-encoder parts after the Conformer: `proj.0`/`proj.2`
            # (`proj1`/`proj2`), `out_ln` and the length-adaptor layers.
            r"encoder\.adaptor\.",
            # The rest of UnitY: text encoder, text decoder (`target_letter_
            # decoder`), T2U encoder (`synthesizer_encoder`) and decoder
            # (`decoder`), and the character projection seamless deletes.
            r"text_encoder\.",
            r"target_letter_decoder\.",
            r"synthesizer_encoder\.",
            r"decoder\.",
            r"decoder_target_letter_decoder\.",
        ],
    ),
)

HF_FORMAT: Final = CheckpointFormat(
    "Hugging Face (transformers SeamlessM4Tv2Model)",
    *_compile(
        [
            (
                rf"speech_encoder\.feature_projection\.layer_norm\.({_P})",
                r"encoder_frontend.post_extract_layer_norm.\1",
            ),
            (
                rf"speech_encoder\.feature_projection\.projection\.({_P})",
                r"encoder_frontend.model_dim_proj.\1",
            ),
            # HF's `encoder.layer_norm` is Meta's `inner_layer_norm`.
            (rf"speech_encoder\.encoder\.layer_norm\.({_P})", r"inner_layer_norm.\1"),
            (
                rf"speech_encoder\.encoder\.layers\.([0-9]+)\.(ffn[12]_layer_norm|self_attn_layer_norm)\.({_P})",
                r"encoder.layers.\1.\2.\3",
            ),
            (
                rf"speech_encoder\.encoder\.layers\.([0-9]+)\.(ffn[12])\.intermediate_dense\.({_P})",
                r"encoder.layers.\1.\2.inner_proj.\3",
            ),
            (
                rf"speech_encoder\.encoder\.layers\.([0-9]+)\.(ffn[12])\.output_dense\.({_P})",
                r"encoder.layers.\1.\2.output_proj.\3",
            ),
            (
                rf"speech_encoder\.encoder\.layers\.([0-9]+)\.self_attn\.linear_([qkv])\.({_P})",
                r"encoder.layers.\1.self_attn.\2_proj.\3",
            ),
            (
                rf"speech_encoder\.encoder\.layers\.([0-9]+)\.self_attn\.linear_out\.({_P})",
                r"encoder.layers.\1.self_attn.output_proj.\2",
            ),
            (
                r"speech_encoder\.encoder\.layers\.([0-9]+)\.self_attn\.distance_embedding\.weight",
                r"encoder.layers.\1.self_attn.sdpa.rel_k_embed.weight",
            ),
            # The LayerNorm before the convolution module.
            (
                rf"speech_encoder\.encoder\.layers\.([0-9]+)\.conv_module\.layer_norm\.({_P})",
                r"encoder.layers.\1.conv_layer_norm.\2",
            ),
            (
                rf"speech_encoder\.encoder\.layers\.([0-9]+)\.conv_module\.depthwise_layer_norm\.({_P})",
                r"encoder.layers.\1.conv.layer_norm.\2",
            ),
            (
                r"speech_encoder\.encoder\.layers\.([0-9]+)\.conv_module\.(pointwise_conv1|depthwise_conv|pointwise_conv2)\.weight",
                r"encoder.layers.\1.conv.\2.weight",
            ),
            (
                rf"speech_encoder\.encoder\.layers\.([0-9]+)\.final_layer_norm\.({_P})",
                r"encoder.layers.\1.layer_norm.\2",
            ),
        ],
        [
            # Speech-encoder parts after `encoder.layer_norm`.
            r"speech_encoder\.intermediate_ffn\.",
            r"speech_encoder\.adapter\.",
            r"speech_encoder\.inner_layer_norm\.",  # after the adaptor
            # The rest of SeamlessM4Tv2Model.
            r"shared\.",
            r"lm_head\.",
            r"text_encoder\.",
            r"text_decoder\.",
            r"t2u_model\.",
            r"vocoder\.",
        ],
    ),
)

_FORMAT_MARKERS: Final = (
    (FAIRSEQ1_FORMAT, ("encoder.w2v_encoder.",)),
    (META_FORMAT, ("speech_encoder_frontend.", "speech_encoder.inner.")),
    (HF_FORMAT, ("speech_encoder.encoder.", "speech_encoder.feature_projection.")),
    (NATIVE_FORMAT, ("encoder_frontend.", "encoder.layers.")),
)


def detect_checkpoint_format(keys: Iterable[str]) -> CheckpointFormat:
    """Tell the format from the speech-encoder keys of a (flat) state dict.

    :raises ValueError: if no format's speech-encoder keys are present, or if
        those of more than one are (a mixed or mangled checkpoint).
    """
    keys = list(keys)

    found: list[tuple[CheckpointFormat, str]] = []
    for fmt, prefixes in _FORMAT_MARKERS:
        example = next((k for k in keys if k.startswith(prefixes)), None)
        if example is not None:
            found.append((fmt, example))

    if len(found) == 1:
        return found[0][0]

    if found:
        layouts = "; ".join(f"`{key}` ({fmt.name})" for fmt, key in found)
        raise ValueError(
            f"The checkpoint mixes speech-encoder keys of several layouts: {layouts}. Convert it from one source only."
        )

    sample = ", ".join(sorted(keys)[:5]) or "none"
    raise ValueError(
        f"The checkpoint holds no SeamlessM4T-v2 speech-encoder weights in a known format (Meta fairseq1 `encoder.w2v_encoder.w2v_model.*`, Meta fairseq2-0.2 `speech_encoder.inner.*`, Hugging Face `speech_encoder.encoder.*` or fairseq2 `encoder.layers.*`); first keys: {sample}."
    )


def select_speech_encoder_keys(keys: Iterable[str]) -> list[str]:
    """The keys of a flat checkpoint whose tensors the speech encoder needs.

    Decided from names alone, so a loader can call it before reading any
    tensor data.

    :raises ValueError: naming the first key that is neither needed nor known.
    """
    keys = list(keys)

    fmt = detect_checkpoint_format(keys)

    return [k for k in keys if fmt.convert_key(k) is not None]


def convert_sm4t_speech_encoder_state_dict(
    state_dict: dict[str, object], config: SM4TSpeechEncoderConfig
) -> dict[str, object]:
    """Map a Meta (fairseq1 or fairseq2-0.2), Hugging Face or native checkpoint onto :class:`SM4TSpeechEncoder`.

    :raises ValueError: on an unexpected key, or when the checkpoint's number
        of Conformer blocks differs from ``config.num_encoder_layers``.
    """
    source = unwrap_checkpoint(state_dict)

    fmt = detect_checkpoint_format(source)

    converted: dict[str, object] = {}

    for key, value in source.items():
        new_key = fmt.convert_key(key)
        if new_key is not None:
            converted[new_key] = value

    _check_num_layers(converted, config, fmt)

    return converted


def _check_num_layers(
    state_dict: Mapping[str, object],
    config: SM4TSpeechEncoderConfig,
    fmt: CheckpointFormat,
) -> None:
    layer_ids = encoder_layer_indices(state_dict)

    num_layers = max(layer_ids) + 1 if layer_ids else 0

    if num_layers != config.num_encoder_layers:
        raise ValueError(
            f"The {fmt.name} checkpoint has {num_layers} Conformer blocks, but the model configuration has `num_encoder_layers={config.num_encoder_layers}`; use the matching `model_arch` (e.g. `large`) or `model_config`."
        )
