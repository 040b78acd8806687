"""Random-weight checkpoints at the paper's shapes, in the layouts users download.

The dress rehearsal (``benchmarks/rehearsal.py``) loads these through the same
cards, families and converters as the real releases, so a shape, dtype or key
that only exists at full size fails here first:

- the SeamlessM4T-v2 large speech encoder (580.5M parameters, adaptor included)
  as Hugging Face safetensors shards listed by ``model.safetensors.index.json``
  (``speech_encoder.*`` plus a few keys of the other parts in their own shard),
  and as Meta's fairseq1 ``seamlessM4T_v2_large.pt`` (converted by
  ``tests/support/sm4t_fairseq1.py``, written from seamless_communication's key
  map independently of the plugin's converter);
- a Llama-3.2-1B-shaped ``LlamaForCausalLM`` (untied output projection, bf16
  index-listed shards) with Llama-3 tokenizer files carrying the real special
  tokens, standing in for the 8B target LLM.

Every writer takes its dimensions, so ``tests/test_rehearsal.py`` runs the same
code at tiny shapes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import torch
from torch import Tensor

from speechmapper_plugin.llm.cards import CHAT_TEMPLATE_FIELD, PAD_TOKEN_FIELD
from speechmapper_plugin.models.sm4t_speech_encoder import SM4T_SPEECH_ENCODER_FAMILY
from speechmapper_plugin.tiny_assets.llama import (
    TinyLlamaDims,
    build_hf_llama,
    fairseq2_llama_config,
)
from speechmapper_plugin.tiny_assets.llama3_llm import (
    LLAMA3_CHAT_TEMPLATE,
    LLAMA3_ROPE_THETA,
)
from speechmapper_plugin.tiny_assets.llama3_tiktoken import (
    LLAMA3_SPECIAL_IDS,
    llama3_tiktoken_card_fields,
    write_llama3_tiktoken,
)
from speechmapper_plugin.tiny_assets.llama3_tokenizer import (
    LLAMA3_BOS,
    LLAMA3_EOT,
    LLAMA3_PAD,
    build_llama3_tokenizer,
)
from speechmapper_plugin.tiny_assets.tokenizer_files import hf_token_id

SM4T_LARGE: Final[Mapping[str, int]] = {
    "hidden_size": 1024,
    "speech_encoder_layers": 24,
    "speech_encoder_attention_heads": 16,
    "speech_encoder_intermediate_size": 4096,
}
"""SeamlessM4T-v2 large's speech encoder (transformers' config names)."""

LLAMA3_2_1B: Final = TinyLlamaDims(
    model_dim=2048,
    num_layers=16,
    num_attn_heads=32,
    num_key_value_heads=8,
    intermediate_size=8192,
    max_seq_len=8192,
)
"""Llama-3.2-1B's decoder (its output projection is tied; ours is not, as in
the 8B models it stands in for)."""

LLAMA3_VOCAB_ROWS: Final = 128_256
"""Llama 3's embedding rows (128,000 BPE tokens + 256 special)."""

# Keys of the other UnitY parts (text decoder, T2U), small, in their own shard:
# the loader must read around them as it does on the release.
_OTHER_PARTS: Final = {
    "text_decoder.layer_norm.weight": (16,),
    "text_decoder.layer_norm.bias": (16,),
    "t2u_model.model.encoder.layer_norm.weight": (16,),
}


def build_sm4t_speech_encoder(
    dims: Mapping[str, int] = SM4T_LARGE, seed: int = 0
) -> torch.nn.Module:
    """transformers' ``SeamlessM4Tv2SpeechEncoder`` (Conformer, adaptor) with
    random weights: only the part the plugin reads, so the 2.3B model is never
    built (580M fp32 parameters are 2.3 GB)."""
    from transformers import SeamlessM4Tv2Config
    from transformers.models.seamless_m4t_v2.modeling_seamless_m4t_v2 import (
        SeamlessM4Tv2SpeechEncoder,
    )

    config = SeamlessM4Tv2Config(
        **dims, speech_encoder_dropout=0.0, speech_encoder_layerdrop=0.0
    )
    torch.manual_seed(seed)
    encoder = SeamlessM4Tv2SpeechEncoder(config).eval()
    # Non-trivial LayerNorms (gains 1 and biases 0 hide a transposed or
    # missing tensor).
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "norm" in name:
                param.add_(torch.randn_like(param), alpha=0.1)
    return encoder


def speech_encoder_state_dict(encoder: torch.nn.Module) -> dict[str, Tensor]:
    """The encoder's tensors under the names ``SeamlessM4Tv2Model`` saves."""
    return {f"speech_encoder.{k}": v for k, v in encoder.state_dict().items()}


def write_sm4t_hf(
    directory: Path, state_dict: Mapping[str, Tensor], *, shard_bytes: int
) -> Path:
    """Safetensors shards of at most ``shard_bytes`` plus the index, as
    ``facebook/seamless-m4t-v2-large`` has; the other parts' keys go to a
    last shard of their own."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for key, value in state_dict.items():
        nbytes = value.numel() * value.element_size()
        if shards[-1] and size + nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = value.contiguous()
        size += nbytes
    generator = torch.Generator().manual_seed(2)
    shards.append(
        {k: torch.randn(s, generator=generator) for k, s in _OTHER_PARTS.items()}
    )

    weight_map: dict[str, str] = {}
    total = 0
    for i, shard in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(directory / name), metadata={"format": "pt"})
        for key, value in shard.items():
            weight_map[key] = name
            total += value.numel() * value.element_size()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(
        json.dumps(index, indent=2) + "\n"
    )
    return directory


def write_sm4t_fairseq1(file: Path, state_dict: Mapping[str, Tensor]) -> Path:
    """Meta's fairseq1 checkpoint layout (``encoder.w2v_encoder.w2v_model.*``,
    pickled training state around it) holding ``state_dict``'s tensors, plus a
    few keys of the other parts."""
    from tests.support.sm4t_fairseq1 import (
        fairseq1_checkpoint,
        hf_to_fairseq1_state_dict,
    )

    generator = torch.Generator().manual_seed(3)
    others = {k: torch.randn(s, generator=generator) for k, s in _OTHER_PARTS.items()}
    converted = hf_to_fairseq1_state_dict({**state_dict, **others})
    file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fairseq1_checkpoint(converted), file)
    return file


def sm4t_cards(
    name: str, hf_dir: Path, fairseq1_file: Path | None, *, arch: str = "large"
) -> list[dict[str, object]]:
    """Cards of the two layouts, as ``assets/models/seamless_m4t_v2.yaml``'s."""
    cards: list[dict[str, object]] = [
        {
            "name": name,
            "model_family": SM4T_SPEECH_ENCODER_FAMILY,
            "model_arch": arch,
            "checkpoint": str(hf_dir),
        }
    ]
    if fairseq1_file is not None:
        cards.append(
            {
                "name": f"{name}_meta",
                "model_family": SM4T_SPEECH_ENCODER_FAMILY,
                "model_arch": arch,
                "checkpoint": str(fairseq1_file),
                "restrict": False,
            }
        )
    return cards


@dataclass(frozen=True)
class WrittenLLM:
    directory: Path
    card: dict[str, object]
    num_parameters: int


def write_llama3_llm(
    directory: Path,
    *,
    card_name: str,
    sentences: Sequence[str],
    dims: TinyLlamaDims = LLAMA3_2_1B,
    vocab_rows: int = LLAMA3_VOCAB_ROWS,
    dtype: torch.dtype = torch.bfloat16,
    max_shard_size: str = "1GB",
    tokenizer: Literal["hg", "tiktoken"] = "hg",
) -> WrittenLLM:
    """A random untied Llama-3 decoder of ``dims`` with ``vocab_rows``
    embedding rows, saved in ``dtype`` as index-listed safetensors shards,
    next to a Llama-3 tokenizer trained on ``sentences`` with the real special
    tokens: ``"hg"`` a Hugging Face ``tokenizer.json`` (a small regular
    vocabulary, the table keeps its real size); ``"tiktoken"`` Meta's layout,
    a ``tokenizer.model`` of 128,000 ranks with the specials at their released
    ids (BOS 128000, EOT 128009, also in ``config.json``), so that every row of
    the real-size table decodes."""
    if tokenizer == "tiktoken":
        bos, eot = LLAMA3_SPECIAL_IDS[LLAMA3_BOS], LLAMA3_SPECIAL_IDS[LLAMA3_EOT]
    else:
        build_llama3_tokenizer(directory, sentences)
        bos = hf_token_id(directory, LLAMA3_BOS)
        eot = hf_token_id(directory, LLAMA3_EOT)
    if max(bos, eot) >= vocab_rows:
        raise ValueError(
            f"The tokenizer's special tokens (ids up to {max(bos, eot)}) do not fit {vocab_rows} embedding rows."
        )

    # Built in `dtype`: Llama-3.2-1B untied is 1.5B parameters (6 GB in fp32).
    default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        model = build_hf_llama(
            vocab_rows,
            seed=1,
            rope_theta=LLAMA3_ROPE_THETA,
            bos=bos,
            eos=eot,
            dims=dims,
            init_std=0.02,
        )
    finally:
        torch.set_default_dtype(default)
    model.save_pretrained(
        directory, safe_serialization=True, max_shard_size=max_shard_size
    )
    num_parameters = sum(p.numel() for p in model.parameters())
    tokenizer_fields: dict[str, object] = {
        "tokenizer": str(directory),
        "tokenizer_family": "llama",
        "tokenizer_config": {"impl": "hg", "use_eot": True},
    }
    if tokenizer == "tiktoken":
        path = write_llama3_tiktoken(directory / "tokenizer.model", sentences)
        tokenizer_fields = llama3_tiktoken_card_fields(path)

    card: dict[str, Any] = {
        "name": card_name,
        "model_family": "llama",
        "model_config": fairseq2_llama_config(vocab_rows, LLAMA3_ROPE_THETA, dims),
        "checkpoint": str(directory),
        **tokenizer_fields,
        PAD_TOKEN_FIELD: LLAMA3_PAD,
        CHAT_TEMPLATE_FIELD: LLAMA3_CHAT_TEMPLATE,
    }
    return WrittenLLM(directory, card, num_parameters)
