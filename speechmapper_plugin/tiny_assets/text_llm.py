"""A tiny Llama that knows the toy world's language, trained on text only.

SpeechMapper's claim is that a projector trained on transcription alone lets a
frozen, *instruction-following* LLM translate speech. A random tiny LLM knows
nothing, so the quickstart first teaches one, from text, the three instructions
the story needs: repeat an English sentence, translate it to French, translate
it to German, each with several wordings (the plugin's transcription and
translation prompt pools among them).

The English sentence goes where ``<speech>`` goes, as its token embeddings
followed by a random number of pad-token embeddings: the shape of what a
projector emits (the transcript's embeddings, then pads). The LLM is trained
through the plugin's own path for feeding embeddings (``assemble_inputs`` and
``response_cross_entropy``, the stage-2 CE), with fairseq2's ``llama`` model
loaded from the Hugging Face checkpoint through its card, and written back to
that checkpoint with fairseq2's Hugging Face converter; any code that loads a
target LLM loads it unchanged.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Final

import torch
from fairseq2.assets import AssetCard
from fairseq2.data.tokenizers import Tokenizer, load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.hg import get_hugging_face_converter
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.utils.validation import ValidationError, ValidationResult
from torch import Tensor

from speechmapper_plugin.data.instructions.prompts import (
    ASR_EVAL_PROMPTS,
    ASR_TRAIN_PROMPTS,
    ST_PROMPTS,
    language_name,
    with_placeholder,
)
from speechmapper_plugin.generation import (
    GenerationConfig,
    generate_from_embeddings,
)
from speechmapper_plugin.llm import SPEECH_PLACEHOLDER
from speechmapper_plugin.llm.assemble import AssembledInputs, assemble_inputs
from speechmapper_plugin.llm.chat_template import ChatTemplate, chat_template_for_card
from speechmapper_plugin.llm.embeddings import embed_token_ids
from speechmapper_plugin.llm.speech_prompt import (
    encode_response,
    encode_speech_prompt,
    stop_token_ids,
)
from speechmapper_plugin.llm.target_embeddings import resolve_pad_token
from speechmapper_plugin.llm.tokens import create_text_decoder
from speechmapper_plugin.losses.stage2 import response_cross_entropy
from speechmapper_plugin.tiny_assets.llama import TinyLlamaDims
from speechmapper_plugin.tiny_assets.llama3_llm import TinyLLM, write_tiny_llama3
from speechmapper_plugin.tiny_assets.sentences import INSTRUCTION_SENTENCES
from speechmapper_plugin.tiny_assets.toy_world import ParallelSentence
from speechmapper_plugin.validation import check_positive_fields

TASKS: Final = ("repeat", "fr", "de")
"""What the toy LLM learns: repeat the English, translate it to French or German."""

EXTRA_REPEAT_PROMPTS: Final = (
    "Repeat the sentence.",
    "Say it again.",
    "Copy this sentence.",
)

EXTRA_TRANSLATION_PROMPTS: Final = (
    "Translate this into {language}.",
    "How do you say this in {language}?",
    "{language} translation, please.",
)


def task_prompts(task: str) -> tuple[str, ...]:
    """The user turns (with ``<speech>``) the toy LLM learns for ``task``:
    every wording of the plugin's pools plus a few more."""
    prompts: tuple[str, ...]
    if task == "repeat":
        prompts = ASR_TRAIN_PROMPTS + ASR_EVAL_PROMPTS + EXTRA_REPEAT_PROMPTS
    elif task in ("fr", "de"):
        name = language_name(task)
        prompts = tuple(
            p.replace("{language}", name)
            for p in ST_PROMPTS + EXTRA_TRANSLATION_PROMPTS
        )
    else:
        raise ValueError(f"Unknown task {task!r}; expected one of {TASKS}.")
    return tuple(with_placeholder(p) for p in prompts)


def task_response(sentence: ParallelSentence, task: str) -> str:
    """The answer to ``task`` about ``sentence``."""
    return sentence.en if task == "repeat" else sentence.text(task)


TOY_LLM_DIMS: Final = TinyLlamaDims(
    model_dim=64,
    num_layers=3,
    num_attn_heads=2,
    num_key_value_heads=1,
    intermediate_size=256,
    max_seq_len=256,
)
"""The toy LLM's shape: 64-d like the tiny projector's output; two heads of
32 dimensions (with 16, Llama 3's RoPE base leaves too few frequencies to
tell nearby positions apart: it learned more slowly)."""

TOY_INIT_STD: Final = 0.2
"""The std of the random weights at step 0 (as the other tiny LLMs); the
measured training runs started from it."""

TOY_ROPE_THETA: Final = 500_000.0
"""RoPE base (Llama 3's)."""

TOY_TOKENIZER_VOCAB_SIZE: Final = 960
"""BPE vocabulary: whole words for nearly every word of the three languages
and of the prompts, within the tiny LLM's 1024 embedding rows."""

PROMPT_REPEATS: Final = 20
"""How often each prompt wording is in the tokenizer's training text."""


@dataclass(kw_only=True)
class ToyLLMTrainingConfig:
    """How the toy LLM is trained (AdamW, warmup then cosine decay)."""

    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    max_pad_ratio: float = 2.0
    """Trailing pads after the sentence: 0 to ``max_pad_ratio`` times its
    number of tokens (SpeechMapper emits more positions than tokens)."""
    seed: int = 0

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        check_positive_fields(result, self, ("steps", "batch_size"))
        if self.lr <= 0.0:
            result.add_error(f"`lr` must be positive, but is {self.lr}.")
        if self.warmup_steps < 0:
            result.add_error(
                f"`warmup_steps` must be non-negative, but is {self.warmup_steps}."
            )
        if self.max_pad_ratio < 0.0:
            result.add_error(
                f"`max_pad_ratio` must be non-negative, but is {self.max_pad_ratio}."
            )
        return result

    def check(self) -> None:
        result = self.validate()
        if result.has_error():
            raise ValidationError(result)


@dataclass
class ToyLLMTrainingResult:
    llm: TinyLLM
    losses: list[float] = field(default_factory=list)
    """Mean CE of each logged window of steps."""
    train_s: float = 0.0


class ToyLLMSession:
    """A toy LLM loaded through its card, with what prompting it needs."""

    def __init__(
        self, card: AssetCard, model: TransformerLM, tokenizer: Tokenizer
    ) -> None:
        self.card = card
        self.model = model
        self.tokenizer = tokenizer
        self.template: ChatTemplate = chat_template_for_card(card)
        _, self.pad_idx = resolve_pad_token(card, tokenizer, None)
        self._encode = tokenizer.create_raw_encoder()
        self._decode = create_text_decoder(tokenizer)
        self.stop_ids = stop_token_ids(tokenizer, self.template)

    @classmethod
    def load(cls, card: AssetCard | dict[str, object]) -> ToyLLMSession:
        if isinstance(card, dict):
            card = AssetCard(str(card["name"]), card)
        model = load_model(card, device=torch.device("cpu"), dtype=torch.float32)
        if not isinstance(model, TransformerLM):
            raise TypeError(f"{card.name} is not a decoder-only language model.")
        return cls(card, model, load_tokenizer(card))

    def encode(self, text: str) -> list[int]:
        """A transcript's ids as stage 1 encodes it (no BOS/EOS)."""
        return [int(i) for i in self._encode(text).tolist()]

    def decode(self, ids: Sequence[int]) -> str:
        return str(self._decode(torch.tensor(list(ids), dtype=torch.int64)))

    def text_prompt_inputs(
        self,
        instructions: Sequence[str],
        sentences: Sequence[str],
        num_pads: Sequence[int],
        responses: Sequence[str] | None = None,
    ) -> AssembledInputs:
        """Prompts whose ``<speech>`` is each sentence's own token embeddings
        followed by ``num_pads`` pad embeddings: the "text upper bound" of
        SpeechMapper (a perfect projector), through ``assemble_inputs``."""
        prefixes, suffixes = [], []
        for instruction in instructions:
            prompt = encode_speech_prompt(self.tokenizer, self.template, instruction)
            prefixes.append(prompt.prefix_ids)
            suffixes.append(prompt.suffix_ids)

        rows = [
            self.encode(s) + [self.pad_idx] * n
            for s, n in zip(sentences, num_pads, strict=True)
        ]
        speech = self.embed_rows(rows)
        response_ids = (
            None
            if responses is None
            else [encode_response(self.tokenizer, self.template, r) for r in responses]
        )
        return assemble_inputs(
            partial(embed_token_ids, self.model),
            prefixes,
            speech,
            [len(r) for r in rows],
            suffixes,
            response_ids,
        )

    def embed_rows(self, rows: Sequence[Sequence[int]]) -> Tensor:
        """``[B, S, D]``: token rows embedded by the LLM, right-padded."""
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_idx, dtype=torch.int64)
        for b, row in enumerate(rows):
            ids[b, : len(row)] = torch.tensor(row, dtype=torch.int64)
        return embed_token_ids(self.model, ids)

    @torch.inference_mode()
    def generate_text(
        self,
        instructions: Sequence[str],
        sentences: Sequence[str],
        num_pads: Sequence[int],
        *,
        batch_size: int = 64,
    ) -> list[str]:
        """Greedy answers of the LLM to text-upper-bound prompts."""
        self.model.eval()
        outputs: list[str] = []
        for start in range(0, len(sentences), batch_size):
            end = start + batch_size
            inputs = self.text_prompt_inputs(
                instructions[start:end], sentences[start:end], num_pads[start:end]
            )
            results = generate_from_embeddings(
                self.model,
                inputs.embeds,
                inputs.layout,
                stop_token_ids=self.stop_ids,
                config=GenerationConfig(max_new_tokens=48),
            )
            outputs += [self.decode(r.best.tokens) for r in results]
        return outputs


def toy_tokenizer_corpus(sentences: Sequence[ParallelSentence]) -> list[str]:
    """The tokenizer's training text: the sentences in all three languages and
    every prompt wording."""
    prompts = [
        p.replace(SPEECH_PLACEHOLDER, "").strip()
        for t in TASKS
        for p in task_prompts(t)
    ]
    corpus = [s.text(lang) for s in sentences for lang in ("en", "fr", "de")]
    return corpus + [*prompts, *INSTRUCTION_SENTENCES] * PROMPT_REPEATS


def write_untrained_toy_llm(
    directory: Path,
    sentences: Sequence[ParallelSentence],
    *,
    card_name: str,
    seed: int = 0,
    dims: TinyLlamaDims = TOY_LLM_DIMS,
    tokenizer_vocab_size: int = TOY_TOKENIZER_VOCAB_SIZE,
    init_std: float = TOY_INIT_STD,
    rope_theta: float = TOY_ROPE_THETA,
) -> TinyLLM:
    """The toy LLM at step 0: a random Llama 3 with a tokenizer trained on
    the toy world's three languages and the prompts."""
    return write_tiny_llama3(
        directory,
        card_name=card_name,
        sentences=toy_tokenizer_corpus(sentences),
        seed=seed,
        tokenizer_vocab_size=tokenizer_vocab_size,
        dims=dims,
        init_std=init_std,
        rope_theta=rope_theta,
    )


def train_toy_llm(
    directory: Path,
    train: Sequence[ParallelSentence],
    *,
    card_name: str,
    config: ToyLLMTrainingConfig | None = None,
    dims: TinyLlamaDims = TOY_LLM_DIMS,
    init_std: float = TOY_INIT_STD,
    rope_theta: float = TOY_ROPE_THETA,
    log: Callable[[str], None] | None = None,
    log_every: int = 50,
) -> ToyLLMTrainingResult:
    """Write the toy LLM into ``directory`` (Hugging Face safetensors,
    tokenizer, card) and train it on ``train`` to repeat and translate.

    Deterministic for a config (single-threaded CPU)."""
    config = config or ToyLLMTrainingConfig()
    config.check()
    if not train:
        raise ValueError("The toy LLM needs at least one training sentence.")

    llm = write_untrained_toy_llm(
        directory,
        train,
        card_name=card_name,
        seed=config.seed,
        dims=dims,
        init_std=init_std,
        rope_theta=rope_theta,
    )

    # Adam's second-moment estimates of rarely used embedding rows decay into
    # denormal floats, which make CPU kernels ~20x slower; flush them to zero.
    flush_denormal = torch.set_flush_denormal(True)
    try:
        result = _train(llm, train, config, log, log_every)
    finally:
        if flush_denormal:
            torch.set_flush_denormal(False)
    return result


def _train(
    llm: TinyLLM,
    train: Sequence[ParallelSentence],
    config: ToyLLMTrainingConfig,
    log: Callable[[str], None] | None,
    log_every: int,
) -> ToyLLMTrainingResult:
    session = ToyLLMSession.load(llm.card)
    model = session.model
    model.train()

    prompts = {
        task: [
            encode_speech_prompt(session.tokenizer, session.template, p)
            for p in task_prompts(task)
        ]
        for task in TASKS
    }

    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr,
        betas=(0.9, 0.98),
        weight_decay=config.weight_decay,
    )

    def lr_factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(
            config.steps - config.warmup_steps, 1
        )
        return 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)

    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    result = ToyLLMTrainingResult(llm=llm)
    window: list[float] = []
    start = time.perf_counter()

    for step in range(config.steps):
        prefixes, suffixes, rows, responses = [], [], [], []
        for _ in range(config.batch_size):
            sentence = rng.choice(train)
            task = rng.choice(TASKS)
            prompt = rng.choice(prompts[task])
            ids = session.encode(sentence.en)
            num_pads = rng.randint(0, round(config.max_pad_ratio * len(ids)))
            prefixes.append(prompt.prefix_ids)
            suffixes.append(prompt.suffix_ids)
            rows.append(ids + [session.pad_idx] * num_pads)
            responses.append(
                encode_response(
                    session.tokenizer, session.template, task_response(sentence, task)
                )
            )

        speech = session.embed_rows(rows)
        loss, _ = response_cross_entropy(
            model, speech, [len(r) for r in rows], prefixes, suffixes, responses
        )

        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        scheduler.step()

        window.append(float(loss.detach()))
        if (step + 1) % log_every == 0 or step + 1 == config.steps:
            mean = sum(window) / len(window)
            result.losses.append(mean)
            window = []
            if log is not None:
                log(
                    f"toy LLM step {step + 1}/{config.steps}: CE {mean:.3f} ({time.perf_counter() - start:.0f} s)"
                )

    result.train_s = time.perf_counter() - start
    model.eval()
    save_toy_llm(session, llm)
    return result


def save_toy_llm(session: ToyLLMSession, llm: TinyLLM) -> None:
    """Write the trained weights over the Hugging Face checkpoint, converted
    by fairseq2's own ``llama`` converter (the config and tokenizer files the
    untrained model wrote stay valid: the shape did not change)."""
    from fairseq2.models.llama import LLaMAConfig
    from safetensors.torch import save_file

    from speechmapper_plugin.llm.cards import read_llm_config

    config = read_llm_config(session.card)
    if not isinstance(config, LLaMAConfig):
        raise TypeError(f"{session.card.name} is not a llama-family card.")

    state_dict: dict[str, object] = {
        k: v.detach().clone().contiguous()
        for k, v in session.model.state_dict().items()
    }
    converter = get_hugging_face_converter("llama")
    hg = converter.to_hg_state_dict(state_dict, config)
    tensors = {k: v for k, v in hg.items() if isinstance(v, Tensor)}
    save_file(
        tensors, str(llm.directory / "model.safetensors"), metadata={"format": "pt"}
    )
