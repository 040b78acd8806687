"""Tiny checkpoints and their asset cards, written once per test session.

Add a builder here when a test needs ``load_model("<card>")`` on a checkpoint it
creates; keep builders fast (well under a second each).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from tests.support.llm import TinyLLMs, build_tiny_llms


@dataclass
class SessionCards:
    root: Path
    card_dir: Path
    projector_checkpoint: Path
    sm4t_hf_dir: Path
    sm4t_meta_checkpoint: Path
    llms: TinyLLMs
    """Tiny Llama-3-style and EuroLLM-style LLMs (cards ``test_llama``, ``test_eurollm``)."""
    whisper_hf_dir: Path
    """A tiny ``WhisperForConditionalGeneration`` (card ``test_whisper_hf``)."""
    mistral_dir: Path
    """A tiny Mistral v0.3-style LLM and tokenizer (card ``test_mistral``)."""


def write_cards(path: Path, cards: list[dict[str, object]]) -> None:
    """Write a multi-document YAML card file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump_all(cards, sort_keys=False))


def _build_projector_cards(root: Path, card_dir: Path) -> Path:
    from fairseq2.runtime.config_registry import get_config
    from fairseq2.runtime.dependency import get_dependency_resolver

    from speechmapper_plugin.models.speechmapper import (
        SpeechMapperConfig,
        create_speechmapper_model,
    )

    torch.manual_seed(0)
    # The card's arch and override: `tiny` with a 32-d output. (Not through the
    # model hub: that would open the asset store before every card is written.)
    tiny = get_config(get_dependency_resolver(), SpeechMapperConfig, "tiny")
    config = tiny.with_output_dim(32)
    model = create_speechmapper_model(config)
    checkpoint = root / "projector" / "model.pt"
    checkpoint.parent.mkdir(parents=True)
    torch.save({"model": model.state_dict()}, checkpoint)

    write_cards(
        card_dir / "projector.yaml",
        [
            {
                "name": "test_projector_base",
                "model_family": "speechmapper",
                "model_arch": "tiny",
                "model_config": {"output_dim": 32},
                "checkpoint": str(checkpoint),
            },
            {"name": "test_projector_child", "base": "test_projector_base"},
        ],
    )
    return checkpoint


TRAINED_PROJECTOR_CARDS = {
    "test_llama": "test_projector_llama",
    "test_eurollm": "test_projector_eurollm",
}
"""LLM card -> a tiny projector card "trained" (random weights) for it: tiny arch,
64-d in (``test_sm4t_hf``'s width), 64-d out, ``target_llm`` set."""


def _build_trained_projector_cards(root: Path, card_dir: Path) -> None:
    from speechmapper_plugin.models.speechmapper import (
        ProjectorBlockConfig,
        SpeechMapperConfig,
        create_speechmapper_model,
    )

    # The `tiny` arch (not looked up: the asset store must not start before
    # every card file is written).
    block = {"model_dim": 64, "output_dim": 64, "num_layers": 2}
    block |= {"num_attn_heads": 4, "ffn_inner_dim": 128}

    cards: list[dict[str, object]] = []
    for seed, (llm, name) in enumerate(sorted(TRAINED_PROJECTOR_CARDS.items())):
        torch.manual_seed(100 + seed)
        config = SpeechMapperConfig(
            input_dim=64,
            blocks=[ProjectorBlockConfig(**block), ProjectorBlockConfig(**block)],
            output_dim=64,
            dropout_p=0.0,
            target_llm=llm,
        )
        checkpoint = root / name / "model.pt"
        checkpoint.parent.mkdir(parents=True)
        torch.save(
            {"model": create_speechmapper_model(config).state_dict()}, checkpoint
        )
        cards.append(
            {
                "name": name,
                "model_family": "speechmapper",
                "model_arch": "tiny",
                "model_config": {"target_llm": llm},
                "checkpoint": str(checkpoint),
            }
        )
    write_cards(card_dir / "trained_projectors.yaml", cards)


ADAPTER_CARDS = {
    "test_adapter_conv_llama": "conv_tiny",
    "test_adapter_cif_llama": "cif_tiny",
    "test_adapter_ctc_llama": "ctc_compression_tiny",
}
"""Adapter card -> its tiny ``speech_adapter`` arch (64-d in and out, random
weights, ``target_llm: test_llama``): a fixed-rate and two variable-length kinds."""


def _build_adapter_cards(root: Path, card_dir: Path) -> None:
    from fairseq2.runtime.config_registry import get_config
    from fairseq2.runtime.dependency import get_dependency_resolver

    from speechmapper_plugin.models.adapters import (
        AdapterConfig,
        create_speech_adapter_model,
    )

    cards: list[dict[str, object]] = []
    for seed, (name, arch) in enumerate(sorted(ADAPTER_CARDS.items())):
        torch.manual_seed(200 + seed)
        config = get_config(get_dependency_resolver(), AdapterConfig, arch)
        model = create_speech_adapter_model(config)
        checkpoint = root / name / "model.pt"
        checkpoint.parent.mkdir(parents=True)
        torch.save({"model": model.state_dict()}, checkpoint)
        cards.append(
            {
                "name": name,
                "model_family": "speech_adapter",
                "model_arch": arch,
                "model_config": {"target_llm": "test_llama"},
                "checkpoint": str(checkpoint),
            }
        )
    write_cards(card_dir / "adapters.yaml", cards)


def _build_sm4t_cards(root: Path, card_dir: Path) -> tuple[Path, Path]:
    """A tiny SeamlessM4T-v2 in HF safetensors shards and as Meta's ``.pt`` (in
    the fairseq2-0.2 and the fairseq1 layout; the latter a full-pickle file)."""
    from tests.support.sm4t import (
        SM4T_SEED,
        build_hf_model,
        save_hf_checkpoint,
        save_meta_checkpoint,
    )
    from tests.support.sm4t_fairseq1 import save_fairseq1_checkpoint

    model = build_hf_model(SM4T_SEED)
    hf_dir = save_hf_checkpoint(model, root / "sm4t_hf")
    meta_checkpoint = save_meta_checkpoint(model, root / "sm4t_meta" / "model.pt")
    fairseq1_checkpoint = save_fairseq1_checkpoint(
        model, root / "sm4t_fairseq1" / "seamlessM4T_v2_large.pt"
    )

    family = {"model_family": "sm4t_speech_encoder", "model_arch": "tiny"}
    write_cards(
        card_dir / "sm4t.yaml",
        [
            {"name": "test_sm4t_hf", **family, "checkpoint": str(hf_dir)},
            # The same file's features after SeamlessM4T's length adaptor (6.25 Hz).
            {
                "name": "test_sm4t_hf_adaptor",
                **family,
                "model_arch": "tiny_adaptor",
                "checkpoint": str(hf_dir),
            },
            {"name": "test_sm4t_meta", **family, "checkpoint": str(meta_checkpoint)},
            {
                "name": "test_sm4t_fairseq1",
                **family,
                "checkpoint": str(fairseq1_checkpoint),
                "restrict": False,
            },
            {
                "name": "test_sm4t_fairseq1_restricted",
                **family,
                "checkpoint": str(fairseq1_checkpoint),
            },
        ],
    )
    return hf_dir, meta_checkpoint


def _build_llm_cards(root: Path, card_dir: Path) -> TinyLLMs:
    llms, cards = build_tiny_llms(root / "llms")
    write_cards(card_dir / "llms.yaml", cards)
    return llms


def _build_whisper_cards(root: Path, card_dir: Path) -> Path:
    """A tiny Whisper (``WhisperForConditionalGeneration``) in HF safetensors."""
    from speechmapper_plugin.tiny_assets.whisper import write_tiny_whisper

    directory = root / "whisper_hf"
    write_cards(
        card_dir / "whisper.yaml",
        [write_tiny_whisper(directory, card_name="test_whisper_hf", seed=7)],
    )
    return directory


def _build_mistral_cards(root: Path, card_dir: Path) -> Path:
    """A tiny Mistral-7B-Instruct-v0.3-style LLM + tokenizer (card ``test_mistral``)."""
    from speechmapper_plugin.tiny_assets.mistral import write_tiny_mistral
    from speechmapper_plugin.tiny_assets.sentences import training_sentences

    directory = root / "mistral"
    card = write_tiny_mistral(
        directory, card_name="test_mistral", sentences=training_sentences()
    )
    write_cards(card_dir / "mistral.yaml", [card])

    # A tiny Qwen2.5-style tokenizer (card ``test_qwen_tokenizer``, fairseq2's
    # `qwen` tokenizer family, as fairseq2's `qwen25_7b_instruct` card).
    from speechmapper_plugin.tiny_assets.qwen import build_qwen_tokenizer

    qwen_dir = build_qwen_tokenizer(root / "qwen", training_sentences())
    write_cards(
        card_dir / "qwen.yaml",
        [
            {
                "name": "test_qwen_tokenizer",
                "tokenizer": str(qwen_dir),
                "tokenizer_family": "qwen",
                "tokenizer_config": {"use_im_end": True},
                "speechmapper_pad_token": "<|endoftext|>",
                "speechmapper_chat_template": "qwen_chatml",
            }
        ],
    )
    return directory


def build_test_cards(root: Path, card_dir: Path) -> SessionCards:
    projector_checkpoint = _build_projector_cards(root, card_dir)
    whisper_hf_dir = _build_whisper_cards(root, card_dir)
    mistral_dir = _build_mistral_cards(root, card_dir)
    sm4t_hf_dir, sm4t_meta_checkpoint = _build_sm4t_cards(root, card_dir)
    llms = _build_llm_cards(root, card_dir)
    _build_trained_projector_cards(root, card_dir)
    _build_adapter_cards(root, card_dir)

    return SessionCards(
        root=root,
        card_dir=card_dir,
        projector_checkpoint=projector_checkpoint,
        sm4t_hf_dir=sm4t_hf_dir,
        sm4t_meta_checkpoint=sm4t_meta_checkpoint,
        llms=llms,
        whisper_hf_dir=whisper_hf_dir,
        mistral_dir=mistral_dir,
    )
