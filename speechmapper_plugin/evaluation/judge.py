"""LLM-as-judge for open answers (spoken QA): question + reference + answer ->
correct or not (mode ``accuracy``, the paper's metric) or a 0-5 rating (mode
``score``, AudioBench's).

The judge is a text-only LLM named by its own asset card (the evaluate recipe
never defaults it to the evaluated LLM). Its prompt is the mode's shipped file
(``judge_accuracy_prompt.txt`` or ``judge_prompt.txt``) or one given,
rendered in the LLM's own chat template and decoded greedily with the
plugin's generation code, so the verdict of an item never depends on the
batch. Verdicts are parsed strictly (:func:`parse_correct`,
:func:`parse_verdict`) and their raw text cached on disk
(:class:`JudgeCache`): a rerun over the same items calls the judge zero times.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from fairseq2.assets import AssetCard
from fairseq2.data.tokenizers import Tokenizer, load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.transformer_lm import TransformerLM

from speechmapper_plugin.evaluation.judge_cache import JudgeCache, judgement_key
from speechmapper_plugin.evaluation.judge_prompt import (
    DEFAULT_JUDGE_MODE,
    JudgeMode,
    JudgePrompt,
    parse_correct,
    parse_verdict,
)
from speechmapper_plugin.generation import (
    GenerationConfig,
    generate_from_embeddings,
)
from speechmapper_plugin.generation.inputs import model_dtype_and_device
from speechmapper_plugin.llm import (
    ChatTemplate,
    TargetLLMCardError,
    chat_template_for_card,
    encode_text_prompt,
    get_chat_template,
    retrieve_llm_card,
    stop_token_ids,
)
from speechmapper_plugin.llm.cards import resolve_checkpoint_path
from speechmapper_plugin.llm.embeddings import embed_token_ids
from speechmapper_plugin.llm.tokens import create_text_decoder

PROMPT_TOO_LONG = "prompt_too_long"
"""The filled prompt leaves the judge no room to answer within its context."""


@dataclass(frozen=True)
class JudgeItem:
    """One answer to judge."""

    question: str
    reference: str
    hypothesis: str


@dataclass(frozen=True)
class JudgeVerdict:
    """The judge's verdict on one item."""

    score: float | None
    """Mode ``score``: the rating on the prompt's scale (0-5 for the shipped
    prompt); ``None`` when the output is not a valid verdict line (count these
    as unparseable), the item was not judged (:attr:`skip_reason`), or in mode
    ``accuracy``."""

    raw: str
    """The judge's output, verbatim."""

    cached: bool
    """Read from the cache rather than generated in this call."""

    skip_reason: str | None = None
    """Why the item was not sent to the judge (:data:`PROMPT_TOO_LONG`)."""

    correct: bool | None = None
    """Mode ``accuracy``: whether the judge found the answer correct; ``None``
    when unparseable, not judged, or in mode ``score``."""

    @property
    def parsed(self) -> bool:
        """The output held a valid verdict of the judge's mode."""
        return self.score is not None or self.correct is not None


class LLMJudge:
    """Judges answers with a frozen, text-only LLM; see the module docstring."""

    num_calls: int
    """Items actually sent to the LLM by this judge (0 on a fully cached rerun)."""

    def __init__(
        self,
        model: TransformerLM,
        tokenizer: Tokenizer,
        template: ChatTemplate,
        *,
        identity: str,
        cache_dir: Path,
        mode: JudgeMode = DEFAULT_JUDGE_MODE,
        prompt: JudgePrompt | None = None,
        system_prompt: str | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 16,
    ) -> None:
        """
        :param identity: Names the judge in the cache key: the card and its
            checkpoint (see :meth:`from_card`). Two different judges must
            never share an identity.
        :param mode: How outputs are read: ``accuracy`` (``Correct: yes|no``)
            or ``score`` (``Rating: N``); ``prompt`` must ask for that line.
        """
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive, but is {batch_size}.")

        self.generation = GenerationConfig(max_new_tokens=max_new_tokens)
        self.generation.check()

        self.model = model.eval()
        self.tokenizer = tokenizer
        self.template = template
        self.mode: JudgeMode = mode
        self.prompt = prompt or JudgePrompt.from_file(mode=mode)
        # A prompt that asks for the other verdict line would be unparseable
        # on every item; refuse it before judging anything.
        JudgePrompt.from_text(self.prompt.text, source=self.prompt.source, mode=mode)
        self.system_prompt = system_prompt
        self.batch_size = batch_size
        self.cache = JudgeCache(cache_dir)

        dtype, self.device = model_dtype_and_device(model)

        # Everything that changes the judge's output is part of its identity.
        self.identity = json.dumps(
            {
                "judge": identity,
                "dtype": str(dtype),
                "template": template.name,
                "system_prompt": system_prompt,
                "max_new_tokens": max_new_tokens,
                "decoding": "greedy",
            },
            sort_keys=True,
        )

        self.num_calls = 0

        self._stop_ids = stop_token_ids(tokenizer, template)
        self._decoder = create_text_decoder(tokenizer)

    @classmethod
    def from_card(
        cls,
        card_name: str,
        *,
        cache_dir: Path,
        mode: JudgeMode = DEFAULT_JUDGE_MODE,
        prompt_file: Path | None = None,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
        batch_size: int = 8,
        max_new_tokens: int = 16,
        chat_template: str | None = None,
        system_prompt: str | None = None,
    ) -> LLMJudge:
        """Load the judge LLM and its tokenizer from an asset card.

        :param chat_template: The chat template's name; default: the card's
            ``speechmapper_chat_template`` (required for other cards).
        """
        prompt = JudgePrompt.from_file(prompt_file, mode=mode)

        card = retrieve_llm_card(card_name)

        template = (
            get_chat_template(chat_template)
            if chat_template is not None
            else chat_template_for_card(card)
        )

        tokenizer = load_tokenizer(card)

        model = load_model(card, device=device, dtype=dtype)
        if not isinstance(model, TransformerLM):
            raise TargetLLMCardError(
                f"The {card.name} asset card loads a {type(model).__name__}, not a decoder-only LLM (`TransformerLM`); it cannot be a judge."
            )

        return cls(
            model,
            tokenizer,
            template,
            identity=card_identity(card),
            cache_dir=cache_dir,
            mode=mode,
            prompt=prompt,
            system_prompt=system_prompt,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
        )

    def key(self, item: JudgeItem) -> str:
        """The cache key of ``item`` under this judge and prompt."""
        return judgement_key(
            self.identity,
            self.prompt.text,
            item.question,
            item.reference,
            item.hypothesis,
        )

    def judge(self, items: Sequence[JudgeItem]) -> list[JudgeVerdict]:
        """One verdict per item, in order. Cached items are not judged again;
        identical items are judged once. Each batch's outputs are cached as soon
        as they are generated, so an interrupted call loses at most one batch."""
        verdicts: dict[str, JudgeVerdict] = {}
        pending: dict[str, tuple[int, ...]] = {}

        keys = [self.key(item) for item in items]

        for item, key in zip(items, keys, strict=True):
            if key in verdicts or key in pending:
                continue

            raw = self.cache.get(key)
            if raw is not None:
                verdicts[key] = _verdict(raw, self.mode, cached=True)
                continue

            user = self.prompt.fill(item.question, item.reference, item.hypothesis)
            ids = encode_text_prompt(
                self.tokenizer, self.template, user, self.system_prompt
            )
            if len(ids) >= self.model.max_seq_len:
                verdicts[key] = JudgeVerdict(
                    score=None, raw="", cached=False, skip_reason=PROMPT_TOO_LONG
                )
                continue

            pending[key] = ids

        todo = list(pending.items())
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]

            outputs = self._generate([ids for _, ids in batch])

            for (key, _), raw in zip(batch, outputs, strict=True):
                self.cache.put(key, raw, self.identity)
                verdicts[key] = _verdict(raw, self.mode, cached=False)

            self.num_calls += len(batch)

        return [verdicts[key] for key in keys]

    def _generate(self, prompts: Sequence[tuple[int, ...]]) -> list[str]:
        lens = [len(ids) for ids in prompts]

        with torch.inference_mode():
            ids = torch.zeros(len(prompts), max(lens), dtype=torch.int64)
            for row, prompt in enumerate(prompts):
                ids[row, : len(prompt)] = torch.tensor(prompt)

            embeds = embed_token_ids(self.model, ids.to(self.device))

            results = generate_from_embeddings(
                self.model,
                embeds,
                lens,
                stop_token_ids=self._stop_ids,
                config=self.generation,
            )

        return [
            self._decoder(torch.tensor(r.tokens, dtype=torch.int64)) if r.tokens else ""
            for r in results
        ]


def _verdict(raw: str, mode: JudgeMode, *, cached: bool) -> JudgeVerdict:
    """The cache holds raw outputs, so a verdict is always parsed by the mode
    of the judge reading it."""
    if mode == "accuracy":
        return JudgeVerdict(
            score=None, raw=raw, cached=cached, correct=parse_correct(raw)
        )

    score = parse_verdict(raw)

    return JudgeVerdict(
        score=None if score is None else float(score), raw=raw, cached=cached
    )


def card_identity(card: AssetCard) -> str:
    """The card's name, checkpoint URI and a fingerprint of the local checkpoint
    files (relative path, size and modification time of each), so a judge
    whose weights change does not reuse old verdicts."""
    field = card.maybe_get_field("checkpoint")
    uri = str(field.as_uri()) if field is not None else ""

    fingerprint: list[tuple[str, int, int]] = []
    if field is not None:
        path = resolve_checkpoint_path(card)
        files = sorted(p for p in path.rglob("*") if p.is_file())
        if path.is_file():
            files = [path]
        for file in files:
            stat = file.stat()
            rel = file.name if file == path else str(file.relative_to(path))
            fingerprint.append((rel, stat.st_size, stat.st_mtime_ns))

    return json.dumps(
        {"card": card.name, "checkpoint": uri, "files": fingerprint}, sort_keys=True
    )
