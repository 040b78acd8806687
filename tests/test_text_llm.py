"""The toy LLM: trained on text only, it repeats and translates the toy world.

The learning check is scored with sacreBLEU directly (an independent
reference) on held-out dev sentences, against two controls: the English
sentence scored as if it were the translation, and the same model untrained.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import sacrebleu
import torch
from fairseq2.assets import AssetCard
from fairseq2.nn import BatchLayout
from fairseq2.utils.validation import ValidationError

from speechmapper_plugin.llm import load_target_llm_embeddings
from speechmapper_plugin.speech_llm.task_prompts import TaskPrompts
from speechmapper_plugin.tiny_assets.text_llm import (
    TOY_LLM_DIMS,
    ToyLLMSession,
    ToyLLMTrainingConfig,
    task_prompts,
    train_toy_llm,
    write_untrained_toy_llm,
)
from speechmapper_plugin.tiny_assets.toy_world import ToyWorld, ToyWorldSplits

SMALL_DIMS = replace(TOY_LLM_DIMS, num_layers=2)
SMALL_CONFIG = ToyLLMTrainingConfig(steps=500, warmup_steps=50, seed=0)
"""About a minute on one busy core; the full run (3000 steps) reaches chrF
above 90, this one only starts to translate (20-30)."""

MARGIN = 5.0
"""chrF points the trained model must be above each control."""


@pytest.fixture(scope="module")
def world() -> ToyWorldSplits:
    return ToyWorld.generate(11, 1500, 40, 0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, world: ToyWorldSplits):
    directory = tmp_path_factory.mktemp("toy_llm")
    torch.set_num_threads(1)
    return train_toy_llm(
        directory,
        world.train,
        card_name="test_toy_llm",
        config=SMALL_CONFIG,
        dims=SMALL_DIMS,
    )


def _translations(
    session: ToyLLMSession, world: ToyWorldSplits, lang: str
) -> list[str]:
    dev = world.dev
    instruction = TaskPrompts().translation(lang)
    sentences = [s.en for s in dev]
    pads = [len(session.encode(s)) for s in sentences]
    return session.generate_text([instruction] * len(dev), sentences, pads)


@pytest.mark.slow
def test_trained_llm_translates_held_out_sentences_better_than_controls(
    tmp_path: Path, world: ToyWorldSplits, trained
) -> None:
    # Loaded back from disk through its card, as any target LLM.
    session = ToyLLMSession.load(trained.llm.card)
    untrained = ToyLLMSession.load(
        write_untrained_toy_llm(
            tmp_path / "untrained",
            world.train,
            card_name="test_toy_llm_untrained",
            seed=SMALL_CONFIG.seed,
            dims=SMALL_DIMS,
        ).card
    )

    for lang in ("fr", "de"):
        refs = [[s.text(lang) for s in world.dev]]
        chrf = sacrebleu.corpus_chrf(_translations(session, world, lang), refs).score
        no_translation = sacrebleu.corpus_chrf([s.en for s in world.dev], refs).score
        step0 = sacrebleu.corpus_chrf(_translations(untrained, world, lang), refs).score
        assert chrf > no_translation + MARGIN, (lang, chrf, no_translation)
        assert chrf > step0 + MARGIN, (lang, chrf, step0)

    assert trained.losses[-1] < 0.5 * trained.losses[0]


@pytest.mark.slow
def test_saved_checkpoint_is_the_trained_model_for_transformers_too(trained) -> None:
    """fairseq2's Hugging Face converter wrote the weights back: transformers
    reads the same model, and the embedding loader reads its table."""
    from transformers import LlamaForCausalLM

    session = ToyLLMSession.load(trained.llm.card)
    reference = LlamaForCausalLM.from_pretrained(trained.llm.directory).eval()
    ids = torch.randint(0, 300, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            session.model.eval()(ids, BatchLayout.of(ids)),
            reference(ids).logits,
            atol=1e-4,
            rtol=1e-4,
        )

    card = AssetCard(trained.llm.card_name, trained.llm.card)
    table = load_target_llm_embeddings(card, dtype=torch.float32)
    torch.testing.assert_close(
        table.embeddings, reference.model.embed_tokens.weight.detach()
    )


def test_prompts_cover_the_plugin_pools_and_name_the_language() -> None:
    from speechmapper_plugin.data.instructions.prompts import (
        ASR_EVAL_PROMPTS,
        ASR_TRAIN_PROMPTS,
    )

    repeat = task_prompts("repeat")
    for prompt in ASR_TRAIN_PROMPTS + ASR_EVAL_PROMPTS:
        assert f"{prompt}\n<speech>" in repeat
    assert TaskPrompts().translation("fr") in task_prompts("fr")
    assert TaskPrompts().translation("de") in task_prompts("de")
    assert all("French" in p for p in task_prompts("fr"))
    assert all("German" in p and "{" not in p for p in task_prompts("de"))
    with pytest.raises(ValueError, match="Unknown task"):
        task_prompts("es")


def test_bad_training_input(tmp_path: Path, world: ToyWorldSplits) -> None:
    with pytest.raises(ValidationError, match="`steps` must be positive"):
        train_toy_llm(
            tmp_path, world.train, card_name="x", config=ToyLLMTrainingConfig(steps=0)
        )
    with pytest.raises(ValidationError, match="`lr` must be positive"):
        train_toy_llm(
            tmp_path, world.train, card_name="x", config=ToyLLMTrainingConfig(lr=0.0)
        )
    with pytest.raises(ValidationError, match="`max_pad_ratio`"):
        ToyLLMTrainingConfig(max_pad_ratio=-1.0).check()
    with pytest.raises(ValueError, match="at least one training sentence"):
        train_toy_llm(tmp_path, [], card_name="x")


def test_text_upper_bound_prompt_is_the_sentence_embeddings_then_pads(
    tmp_path: Path, world: ToyWorldSplits
) -> None:
    """Where ``<speech>`` goes: the rows of the embedding table for the
    sentence's tokens, then the pad token's row (read from the checkpoint
    directly, not through the model)."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    llm = write_untrained_toy_llm(
        tmp_path / "llm",
        world.train[:200],
        card_name="test_toy_llm_prompt",
        dims=SMALL_DIMS,
    )
    session = ToyLLMSession.load(llm.card)
    table = load_file(llm.directory / "model.safetensors")["model.embed_tokens.weight"]
    hf = AutoTokenizer.from_pretrained(llm.directory)

    sentences = [world.dev[0].en, world.dev[1].en]
    instruction = TaskPrompts().translation("de")
    inputs = session.text_prompt_inputs([instruction] * 2, sentences, [0, 3])

    pad = hf.convert_tokens_to_ids("<|finetune_right_pad_id|>")
    for b, (sentence, num_pads) in enumerate(zip(sentences, [0, 3], strict=True)):
        ids = hf.encode(sentence, add_special_tokens=False) + [pad] * num_pads
        start = inputs.speech_offsets[b]
        torch.testing.assert_close(
            inputs.embeds[b, start : start + len(ids)], table[ids]
        )
        # The row opens with BOS, and the suffix (end of turn, assistant
        # header) follows the pads.
        torch.testing.assert_close(inputs.embeds[b, 0], table[hf.bos_token_id])
        eot = hf.convert_tokens_to_ids("<|eot_id|>")
        torch.testing.assert_close(inputs.embeds[b, start + len(ids)], table[eot])
        assert inputs.layout.seq_lens[b] > start + len(ids)
