"""A tiny SeamlessM4T-v2 written the way Meta's fairseq1 ``seamlessM4T_v2_large.pt`` is.

The key names are written out here from seamless_communication's
``src/seamless_communication/models/unity/loader.py`` (``_fairseq_key_map``
with ``encoder_key = "encoder"``, ``decoder_key = "target_letter_decoder"``,
``t2u_encoder_key = "synthesizer_encoder"``, ``t2u_decoder_key = "decoder"``
and the keys its ``_convert_checkpoint`` deletes), independently of the
plugin's converter, so loading such a file tests that converter.

The file is pickled like a fairseq1 training checkpoint: the state dict under
``model`` next to ``args`` (an ``argparse.Namespace``), ``cfg``, optimizer
history and extra state, i.e. Python objects the restricted unpickler refuses.
"""

from __future__ import annotations

import argparse
import re
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

W2V = "encoder.w2v_encoder.w2v_model."

# HF SeamlessM4Tv2Model -> fairseq1 names. `{attn}` is filled per flavour.
_SPEECH_ENCODER = [
    (r"speech_encoder\.feature_projection\.layer_norm\.", W2V + "layer_norm."),
    (r"speech_encoder\.feature_projection\.projection\.", W2V + "post_extract_proj."),
    (r"speech_encoder\.encoder\.layer_norm\.", W2V + "encoder.layer_norm."),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.ffn(\d)_layer_norm\.",
        W2V + r"encoder.layers.\1.ffn\2.layer_norm.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.ffn(\d)\.intermediate_dense\.",
        W2V + r"encoder.layers.\1.ffn\2.w_1.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.ffn(\d)\.output_dense\.",
        W2V + r"encoder.layers.\1.ffn\2.w_2.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.self_attn_layer_norm\.",
        W2V + r"encoder.layers.\1.self_attn_layer_norm.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.self_attn\.distance_embedding\.",
        W2V + r"encoder.layers.\1.self_attn.rel_k_embedding.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.self_attn\.",
        W2V + r"encoder.layers.\1.self_attn.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.conv_module\.depthwise_layer_norm\.",
        W2V + r"encoder.layers.\1.conv_module.layer_norm2.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.conv_module\.",
        W2V + r"encoder.layers.\1.conv_module.",
    ),
    (
        r"speech_encoder\.encoder\.layers\.(\d+)\.final_layer_norm\.",
        W2V + r"encoder.layers.\1.final_layer_norm.",
    ),
]

_ATTENTION = {
    # fairseq's MultiheadAttention
    "fairseq": [
        (r"linear_q\.", "q_proj."),
        (r"linear_k\.", "k_proj."),
        (r"linear_v\.", "v_proj."),
        (r"linear_out\.", "out_proj."),
    ],
    # ESPnet-style Conformer attention
    "espnet": [
        (r"linear_q\.", "linear_q."),
        (r"linear_k\.", "linear_k."),
        (r"linear_v\.", "linear_v."),
        (r"linear_out\.", "linear_out."),
    ],
}

# The rest of UnitY: the adaptor, then parts the converter checks by prefix only.
_REST = [
    (
        r"speech_encoder\.intermediate_ffn\.intermediate_dense\.",
        "encoder.adaptor.proj.0.",
    ),
    (r"speech_encoder\.intermediate_ffn\.output_dense\.", "encoder.adaptor.proj.2."),
    (r"speech_encoder\.inner_layer_norm\.", "encoder.adaptor.out_ln."),
    # The length adaptor layers (seamless's names for a non-Conformer adaptor).
    *(
        (
            rf"speech_encoder\.adapter\.layers\.(\d+)\.{hf}\.",
            rf"encoder.adaptor.layers.\1.{fs1}.",
        )
        for hf, fs1 in [
            ("residual_layer_norm", "residual_layer_norm"),
            ("residual_conv", "residual_pool.1"),
            ("self_attn_conv", "attn_pool.1"),
            ("self_attn_layer_norm", "self_attn_layer_norm"),
            (r"self_attn\.linear_q", "self_attn.q_proj"),
            (r"self_attn\.linear_k", "self_attn.k_proj"),
            (r"self_attn\.linear_v", "self_attn.v_proj"),
            (r"self_attn\.linear_out", "self_attn.out_proj"),
            (r"ffn\.intermediate_dense", "fc1"),
            (r"ffn\.output_dense", "fc2"),
            ("ffn_layer_norm", "final_layer_norm"),
        ]
    ),
    (r"shared\.weight", "target_letter_decoder.embed_tokens.weight"),
    (r"lm_head\.weight", "target_letter_decoder.output_projection.weight"),
    (r"text_encoder\.", "text_encoder."),
    (r"text_decoder\.", "target_letter_decoder."),
    (r"t2u_model\.model\.encoder\.", "synthesizer_encoder."),
    (r"t2u_model\.model\.decoder\.", "decoder."),
    (r"t2u_model\.lm_head\.", "decoder.output_projection."),
]

# Keys seamless's `_convert_checkpoint` deletes; a real fairseq1 file has them.
_FAIRSEQ1_EXTRAS = {
    W2V + "mask_emb": (4,),
    "target_letter_decoder.version": (1,),
    "target_letter_decoder.embed_positions._float_tensor": (1,),
    "text_encoder.version": (1,),
    "text_encoder.embed_positions._float_tensor": (1,),
    "decoder.char_upsampler.embed_positions._float_tensor": (1,),
    "decoder.char_upsampler.embed_tokens_char.weight": (3, 2),
    "decoder.alignment_encoder.t_conv.0.weight": (2, 2, 1),
    "decoder_target_letter_decoder.proj.weight": (2, 2),
    "decoder_target_letter_decoder.proj.bias": (2,),
}


def hf_to_fairseq1_state_dict(
    hf_state_dict: dict[str, Tensor],
    attention: Literal["fairseq", "espnet"] = "fairseq",
) -> OrderedDict[str, Tensor]:
    """The state dict of a fairseq1 UnitY checkpoint holding ``hf_state_dict``'s
    weights. The vocoder is a separate file in Meta's release and is left out."""
    out: OrderedDict[str, Tensor] = OrderedDict()

    for key, value in hf_state_dict.items():
        if key.startswith("vocoder."):
            continue

        new_key = _rename(key, _SPEECH_ENCODER)
        if new_key is not None:
            match = re.match(r"(.*\.self_attn\.)(linear_.*)", new_key)
            if match is not None:
                tail = _rename(match.group(2), _ATTENTION[attention])
                assert tail is not None, key
                new_key = match.group(1) + tail
        else:
            new_key = _rename(key, _REST)
        if new_key is None:
            raise AssertionError(f"no fairseq1 name for {key}")

        out[new_key] = value.clone()

    generator = torch.Generator().manual_seed(1)
    for key, shape in _FAIRSEQ1_EXTRAS.items():
        out[key] = torch.randn(shape, generator=generator)

    return out


def _rename(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return re.sub(pattern, replacement, key, count=1)
    return None


def fairseq1_checkpoint(state_dict: OrderedDict[str, Tensor]) -> dict[str, object]:
    """What fairseq1's ``checkpoint_utils.save_state`` pickles around a state dict."""
    args = argparse.Namespace(arch="unity_conformer", task="speech_to_text_multitask")
    return {
        "args": args,
        "cfg": {
            "_name": None,
            "common": {"fp16": True, "seed": 1},
            "model": argparse.Namespace(encoder_layers=4, w2v_path="w2v_bert.pt"),
        },
        "model": state_dict,
        "criterion": None,
        "optimizer_history": [
            {
                "criterion_name": "SpeechToUnit2passMultitaskTaskCriterion",
                "optimizer_name": "FairseqAdam",
                "lr_scheduler_state": {"best": None},
                "num_updates": 100_000,
            }
        ],
        "task_state": {},
        "extra_state": {"epoch": 3, "previous_checkpoint_vals": {}},
        "last_optimizer_state": None,
    }


def save_fairseq1_checkpoint(
    model: torch.nn.Module,
    file: Path,
    attention: Literal["fairseq", "espnet"] = "fairseq",
) -> Path:
    file.parent.mkdir(parents=True, exist_ok=True)
    state_dict = hf_to_fairseq1_state_dict(dict(model.state_dict()), attention)
    torch.save(fairseq1_checkpoint(state_dict), file)
    return file
