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
adaptor): our ``length_adaptor.layer_norm``.

The speech-encoder parts after ``inner_layer_norm`` (the intermediate FFN:
fairseq1 ``adaptor.proj.0``/``proj.2``, fairseq2-0.2 ``proj1``/``proj2``, HF
``intermediate_ffn``; the length adaptor layers; their LayerNorm) load into
``length_adaptor`` when the config has ``length_adaptor`` and are dropped
otherwise. Their fairseq1 names (``residual_pool.1``, ``attn_pool.1``,
``fc1``/``fc2``, ``final_layer_norm``) are those ``UnitYLoader._fairseq_key_map``
maps for an adaptor that is not a Conformer adaptor, as in v2.

Everything outside the speech encoder (text encoder/decoder, T2U model,
vocoder) is dropped by explicit pattern; any other key raises ``ValueError``
naming it.
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

    adaptor_renames: tuple[tuple[re.Pattern[str], str], ...] = ()
    """Like ``renames``, for the intermediate FFN and length adaptor: loaded
    only into a model with ``length_adaptor``."""

    def convert_key(self, key: str, *, length_adaptor: bool = True) -> str | None:
        """The fairseq2 name of ``key``, ``None`` if it is dropped (length
        adaptor keys too, unless ``length_adaptor``).

        :raises ValueError: if ``key`` is neither loaded nor known to be skipped.
        """
        for pattern, replacement in self.renames:
            if pattern.fullmatch(key):
                return pattern.sub(replacement, key)

        for pattern, replacement in self.adaptor_renames:
            if pattern.fullmatch(key):
                return pattern.sub(replacement, key) if length_adaptor else None

        if any(pattern.match(key) for pattern in self.drops):
            return None

        raise ValueError(
            f"Unexpected key `{key}` in a {self.name} SeamlessM4T checkpoint: it is neither a speech-encoder weight nor a known part of the model to skip. The checkpoint may be of a different architecture (e.g. SeamlessM4T v1, whose Conformer has BatchNorm convolutions and Transformer-XL relative attention)."
        )


def _compile_renames(
    renames: Iterable[tuple[str, str]],
) -> tuple[tuple[re.Pattern[str], str], ...]:
    return tuple((re.compile(p), r) for p, r in renames)


def _compile(
    renames: Iterable[tuple[str, str]], drops: Iterable[str]
) -> tuple[tuple[tuple[re.Pattern[str], str], ...], tuple[re.Pattern[str], ...]]:
    return _compile_renames(renames), tuple(re.compile(p) for p in drops)


# The names inside one length adaptor layer in fairseq2 (0.2 and ours alike).
_ADAPTOR_LAYER_PARAMS: Final = (
    rf"(?:(?:residual|self_attn|ffn)_layer_norm\.{_P}"
    rf"|(?:residual|self_attn)_conv\.{_P}"
    rf"|self_attn\.(?:q_proj|k_proj|v_proj|output_proj)\.{_P}"
    rf"|ffn\.(?:inner_proj|output_proj)\.{_P})"
)

_ADAPTOR: Final = "length_adaptor."

# A parameter leaf as a named group, so a rename's numbered groups (the layer,
# then those of the module name) are not shifted by it.
_LEAF: Final = r"(?P<leaf>weight|bias)"


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
    adaptor_renames=_compile_renames(
        [
            (
                rf"length_adaptor\.(ffn\.(?:inner_proj|output_proj)\.{_P}|layer_norm\.{_P})",
                _ADAPTOR + r"\1",
            ),
            (
                rf"length_adaptor\.layers\.([0-9]+)\.({_ADAPTOR_LAYER_PARAMS})",
                _ADAPTOR + r"layers.\1.\2",
            ),
        ]
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
            # The rest of UnitY.
            r"text_encoder_frontend\.",
            r"text_encoder\.",
            r"text_decoder_frontend\.",
            r"text_decoder\.",
            r"final_proj\.",
            r"t2u_model\.",
        ],
    ),
    adaptor_renames=_compile_renames(
        [
            (rf"speech_encoder\.proj1\.({_P})", _ADAPTOR + r"ffn.inner_proj.\1"),
            (rf"speech_encoder\.proj2\.({_P})", _ADAPTOR + r"ffn.output_proj.\1"),
            (
                rf"speech_encoder\.adaptor_layers\.([0-9]+)\.({_ADAPTOR_LAYER_PARAMS})",
                _ADAPTOR + r"layers.\1.\2",
            ),
            # After the adaptor layers.
            (rf"speech_encoder\.layer_norm\.({_P})", _ADAPTOR + r"layer_norm.\1"),
        ]
    ),
)

_W2V: Final = r"encoder\.w2v_encoder\.w2v_model\."
_W2V_LAYER: Final = _W2V + r"encoder\.layers\.([0-9]+)\."
_FS1_ADAPTOR_LAYER: Final = r"encoder\.adaptor\.layers\.([0-9]+)\."

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
    adaptor_renames=_compile_renames(
        [
            (rf"encoder\.adaptor\.proj\.0\.({_P})", _ADAPTOR + r"ffn.inner_proj.\1"),
            (rf"encoder\.adaptor\.proj\.2\.({_P})", _ADAPTOR + r"ffn.output_proj.\1"),
            (rf"encoder\.adaptor\.out_ln\.({_P})", _ADAPTOR + r"layer_norm.\1"),
            *(
                (
                    rf"{_FS1_ADAPTOR_LAYER}{fs1}\.{_LEAF}",
                    _ADAPTOR + rf"layers.\1.{ours}.\g<leaf>",
                )
                for fs1, ours in (
                    (r"residual_layer_norm", "residual_layer_norm"),
                    (r"residual_pool\.1", "residual_conv"),
                    (r"attn_pool\.1", "self_attn_conv"),
                    (r"self_attn_layer_norm", "self_attn_layer_norm"),
                    (r"self_attn\.([qkv])_proj", r"self_attn.\2_proj"),
                    (r"self_attn\.out_proj", "self_attn.output_proj"),
                    (r"fc1", "ffn.inner_proj"),
                    (r"fc2", "ffn.output_proj"),
                    (r"final_layer_norm", "ffn_layer_norm"),
                )
            ),
        ]
    ),
)

_HF_ADAPTOR_LAYER: Final = r"speech_encoder\.adapter\.layers\.([0-9]+)\."

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
            # The rest of SeamlessM4Tv2Model.
            r"shared\.",
            r"lm_head\.",
            r"text_encoder\.",
            r"text_decoder\.",
            r"t2u_model\.",
            r"vocoder\.",
        ],
    ),
    adaptor_renames=_compile_renames(
        [
            (
                rf"speech_encoder\.intermediate_ffn\.intermediate_dense\.({_P})",
                _ADAPTOR + r"ffn.inner_proj.\1",
            ),
            (
                rf"speech_encoder\.intermediate_ffn\.output_dense\.({_P})",
                _ADAPTOR + r"ffn.output_proj.\1",
            ),
            *(
                (
                    rf"{_HF_ADAPTOR_LAYER}{hf}\.{_LEAF}",
                    _ADAPTOR + rf"layers.\1.{ours}.\g<leaf>",
                )
                for hf, ours in (
                    (r"(residual|self_attn|ffn)_layer_norm", r"\2_layer_norm"),
                    (r"(residual|self_attn)_conv", r"\2_conv"),
                    (r"self_attn\.linear_([qkv])", r"self_attn.\2_proj"),
                    (r"self_attn\.linear_out", "self_attn.output_proj"),
                    (r"ffn\.intermediate_dense", "ffn.inner_proj"),
                    (r"ffn\.output_dense", "ffn.output_proj"),
                )
            ),
            # After the adaptor layers (HF's name for it; see the trap above).
            (rf"speech_encoder\.inner_layer_norm\.({_P})", _ADAPTOR + r"layer_norm.\1"),
        ]
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
    tensor data; the config is not known then, so the length adaptor's
    tensors (about 9% of ``large``'s speech encoder) are always selected and
    the converter drops them for a model without the adaptor.

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
        new_key = fmt.convert_key(key, length_adaptor=config.length_adaptor)
        if new_key is not None:
            converted[new_key] = value

    _check_num_layers(converted, config, fmt)

    if config.length_adaptor:
        _check_adaptor(converted, config, fmt)

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


def _check_adaptor(
    state_dict: Mapping[str, object],
    config: SM4TSpeechEncoderConfig,
    fmt: CheckpointFormat,
) -> None:
    """A model with ``length_adaptor`` needs the checkpoint's adaptor, with as
    many layers as configured."""
    if not any(key.startswith(_ADAPTOR) for key in state_dict):
        raise ValueError(
            f"The {fmt.name} checkpoint has no length adaptor weights, but the model configuration has `length_adaptor=True`; load it without the adaptor (arch `large` or `tiny`)."
        )

    layer_ids = {
        int(m.group(1))
        for key in state_dict
        if (m := re.match(r"length_adaptor\.layers\.(\d+)\.", key))
    }

    num_layers = max(layer_ids) + 1 if layer_ids else 0

    if num_layers != config.num_adaptor_layers:
        raise ValueError(
            f"The {fmt.name} checkpoint has {num_layers} length adaptor layers, but the model configuration has `num_adaptor_layers={config.num_adaptor_layers}`."
        )
