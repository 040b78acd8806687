"""The MSE targets of both training stages: tokenizer + token-embedding table.

Stage 1 regresses the projector output onto the LLM's token embeddings of the
transcript, padded with the pad token's embedding; stage 2 keeps that term
(weighted by σ). :class:`TargetLLMEmbeddings` is the one type both stages use
for it: the table, the pad token, and the transcript-tokenisation policy
(normalisation, BOS, EOS), so that a transcript becomes the same target ids in
both. :func:`load_target_llm_embeddings` loads exactly what that needs from a
target-LLM card (stage 1 never builds the LLM decoder) and checks, before
reading the table, that the tokenizer, the pad token and the checkpoint belong
together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Final, final

import torch
from fairseq2.assets import AssetCard
from fairseq2.data.tokenizers import Tokenizer, load_tokenizer
from fairseq2.logging import log
from torch import Tensor

from speechmapper_plugin.llm.cards import (
    PAD_TOKEN_FIELD,
    TargetLLMCardError,
    read_pad_token,
    retrieve_llm_card,
)
from speechmapper_plugin.llm.token_embeddings import locate_token_embeddings
from speechmapper_plugin.llm.tokens import (
    UnknownTokenError,
    create_text_decoder,
    id_to_token,
    max_token_id,
    token_to_id,
)
from speechmapper_plugin.llm.transcripts import (
    TranscriptNormalization,
    normalize_transcript,
)
from speechmapper_plugin.metrics.embedding_space import row_norm_and_median
from speechmapper_plugin.models.card_config import maybe_model_config_of

PAD_NORM_WARN_RATIO: Final = 0.1
"""Warn when the pad target's norm is below this fraction of the median row
norm: the row is then likely untrained (Llama 3's reserved tokens)."""

PAD_NORM_MIN_RATIO: Final = 0.01
"""Refuse a pad target whose norm is below this fraction of the median row
norm (unless ``allow_weak_pad_row``): such a row is untrained, all zero or
nearly (Llama 3's reserved tokens), and stage 1 would teach the projector to
emit near-zero vectors at every pad position."""


class WeakPadRowError(TargetLLMCardError):
    """The pad target's row is (nearly) zero and was not allowed."""


@dataclass(kw_only=True, eq=False)
class TargetTokens:
    """The transcript side of the MSE targets: which ids a transcript becomes
    (normalisation, tokenisation, BOS/EOS) and which token pads them.

    Everything of :class:`TargetLLMEmbeddings` but the table, so that stage 2
    can tokenise its transcripts before it loads the LLM whose table it then
    uses (:meth:`with_table`).
    """

    card_name: str

    tokenizer: Tokenizer

    pad_idx: int

    pad_token: str

    bos_idx: int | None = None
    """Prepended by :meth:`encode` when not ``None``."""

    eos_idx: int | None = None
    """Appended by :meth:`encode` when not ``None``."""

    normalization: TranscriptNormalization = "as_given"
    """How :meth:`encode` writes the text first."""

    allow_weak_pad_row: bool = False
    """Accept a pad row below :data:`PAD_NORM_MIN_RATIO` x the median row norm
    (only warn) when the table is attached; refused otherwise."""

    card: AssetCard | None = field(default=None, repr=False)
    """The card named ``card_name``, if at hand (one built in code is in no
    asset store)."""

    def __post_init__(self) -> None:
        self._encoder = self.tokenizer.create_raw_encoder()
        self._decoder = create_text_decoder(self.tokenizer)

    def encode(self, text: str) -> Tensor:
        """The transcript's target ids (int64): the text normalised as
        configured, tokenised without special tokens, then BOS/EOS only if
        configured. Both stages build their MSE targets from these ids."""
        ids = self._encoder(normalize_transcript(text, self.normalization))

        parts = [ids]
        if self.bos_idx is not None:
            parts.insert(0, ids.new_tensor([self.bos_idx]))
        if self.eos_idx is not None:
            parts.append(ids.new_tensor([self.eos_idx]))

        return torch.cat(parts) if len(parts) > 1 else ids

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The text of ``ids``, special tokens (BOS, EOS, pad, ...) skipped."""
        if not isinstance(ids, Tensor):
            ids = torch.tensor(list(ids), dtype=torch.int64)

        return self._decoder(ids.detach().to("cpu", torch.int64))

    def read_table(self, dtype: torch.dtype | None = None) -> TargetLLMEmbeddings:
        """These tokens with the embedding table read from the card's
        checkpoint (only the table: the decoder is never built).

        :param dtype: the table's dtype; ``None`` keeps the checkpoint's (bf16
            for Llama 3.1 / EuroLLM: ~1 GB).
        :raises TargetLLMCardError: before reading, if the tokenizer can
            produce ids beyond the table or the table's shape disagrees with
            the card's model configuration.
        :raises WeakPadRowError: after reading, if the pad row is (nearly)
            zero and ``allow_weak_pad_row`` is off.
        """
        card = self._retrieve_card()
        source = locate_token_embeddings(card)

        where = str(source.file)
        _check_tokenizer_fits(card, self.tokenizer, source.num_embeddings, where)
        _check_model_config(card, source.shape, where)

        targets = self._attach(source.read(dtype))
        report_pad_row(
            card.name,
            targets.table,
            self.pad_token,
            self.pad_idx,
            allow_weak=self.allow_weak_pad_row,
        )
        return targets

    def with_table(self, table: Tensor) -> TargetLLMEmbeddings:
        """These tokens with an embedding table already in memory (stage 2:
        the loaded LLM's own), checked as :meth:`read_table` checks the one it
        reads (the pad row included)."""
        card = self._retrieve_card()
        if table.ndim == 2:  # else `_attach` rejects it, saying why
            where = f"the loaded {card.name} model"
            _check_tokenizer_fits(card, self.tokenizer, table.size(0), where)
            _check_model_config(card, tuple(table.shape), where)

        targets = self._attach(table)
        report_pad_row(
            card.name,
            table,
            self.pad_token,
            self.pad_idx,
            allow_weak=self.allow_weak_pad_row,
        )
        return targets

    def _retrieve_card(self) -> AssetCard:
        return self.card or retrieve_llm_card(self.card_name)

    def _attach(self, table: Tensor) -> TargetLLMEmbeddings:
        tokens = {f.name: getattr(self, f.name) for f in fields(TargetTokens)}
        return TargetLLMEmbeddings(**tokens, table=table)


@final
@dataclass(kw_only=True, eq=False, repr=False)
class TargetLLMEmbeddings(TargetTokens):
    """A target LLM's token-embedding table ``[V, D]`` with the transcript
    policy of the MSE targets: the one type both stages build targets from.

    ``encode`` gives the transcript ids whose embeddings are the MSE targets
    (stage 1, and stage 2's MSE term); ``decode`` turns ids back into text
    (special tokens dropped) for the embedding-space WER.
    """

    table: Tensor
    """``[V, D]``; checked by :meth:`TargetTokens.read_table` and
    :meth:`TargetTokens.with_table`, which build this type."""

    def __post_init__(self) -> None:
        table = self.table
        if table.ndim != 2:
            raise ValueError(
                f"`table` must be [vocab, dim], but has shape {list(table.shape)}."
            )

        for name in ("pad_idx", "bos_idx", "eos_idx"):
            idx = getattr(self, name)
            if idx is not None and not 0 <= idx < table.size(0):
                raise ValueError(
                    f"`{name}` ({idx}) is outside the embedding table of {self.card_name} ({table.size(0)} rows)."
                )

        super().__post_init__()

    @property
    def embeddings(self) -> Tensor:
        """The embedding table ``[V, D]`` (the same tensor as :attr:`table`)."""
        return self.table

    @property
    def num_embeddings(self) -> int:
        return self.table.size(0)

    @property
    def embed_dim(self) -> int:
        return self.table.size(1)

    @property
    def pad_embedding(self) -> Tensor:
        """``[D]``: what the MSE targets are padded with."""
        return self.table[self.pad_idx]

    def embed(self, ids: Tensor) -> Tensor:
        """The embeddings of ``ids`` (any shape) from the table: ``[*, D]``."""
        return self.table[ids.to(self.table.device)]

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> TargetLLMEmbeddings:
        """The same embeddings with the table on ``device`` / in ``dtype``."""
        return replace(self, table=self.table.to(device=device, dtype=dtype))

    def __repr__(self) -> str:
        return f"TargetLLMEmbeddings(card_name={self.card_name!r}, table={list(self.table.shape)} {self.table.dtype}, pad_token={self.pad_token!r}, pad_idx={self.pad_idx})"


def resolve_target_tokens(
    card_name: str | AssetCard,
    *,
    pad_token: str | None = None,
    add_bos: bool = False,
    add_eos: bool = False,
    normalization: TranscriptNormalization = "as_given",
    allow_weak_pad_row: bool = False,
) -> TargetTokens:
    """The target LLM's tokenizer with the transcript policy, without its table.

    :param pad_token: the token whose embedding pads the targets; defaults to the
        card's ``speechmapper_pad_token``, then to the tokenizer's pad token.
    :param add_bos: make :meth:`TargetTokens.encode` prepend BOS.
    :param add_eos: make :meth:`TargetTokens.encode` append EOS.
    :param normalization: how :meth:`TargetTokens.encode` writes transcripts
        (see :mod:`speechmapper_plugin.llm.transcripts`).
    :param allow_weak_pad_row: accept a (nearly) zero pad row when the table
        is attached, with a warning (see :func:`report_pad_row`).
    :raises TargetLLMCardError: if the pad token is unknown, or BOS/EOS is
        asked for and the tokenizer has none.
    """
    card = retrieve_llm_card(card_name)

    tokenizer = load_tokenizer(card)

    pad_token, pad_idx = resolve_pad_token(card, tokenizer, pad_token)

    bos_idx = (
        _special_idx(card, "BOS", tokenizer.vocab_info.bos_idx) if add_bos else None
    )
    eos_idx = (
        _special_idx(card, "EOS", tokenizer.vocab_info.eos_idx) if add_eos else None
    )

    return TargetTokens(
        card_name=card.name,
        tokenizer=tokenizer,
        pad_idx=pad_idx,
        pad_token=pad_token,
        bos_idx=bos_idx,
        eos_idx=eos_idx,
        normalization=normalization,
        allow_weak_pad_row=allow_weak_pad_row,
        card=card,
    )


def load_target_llm_embeddings(
    card_name: str | AssetCard,
    *,
    pad_token: str | None = None,
    add_bos: bool = False,
    add_eos: bool = False,
    normalization: TranscriptNormalization = "as_given",
    allow_weak_pad_row: bool = False,
    dtype: torch.dtype | None = None,
) -> TargetLLMEmbeddings:
    """Load a target LLM's tokenizer and embedding table from its asset card:
    :func:`resolve_target_tokens`, then :meth:`TargetTokens.read_table`.

    Raises before reading the table if the pad token is unknown, if the
    tokenizer can produce ids beyond the table, or if the table's shape
    disagrees with the card's model configuration; after reading it if the pad
    row is (nearly) zero and ``allow_weak_pad_row`` is off.
    """
    return resolve_target_tokens(
        card_name,
        pad_token=pad_token,
        add_bos=add_bos,
        add_eos=add_eos,
        normalization=normalization,
        allow_weak_pad_row=allow_weak_pad_row,
    ).read_table(dtype)


def report_pad_row(
    card_name: str,
    table: Tensor,
    pad_token: str,
    pad_idx: int,
    *,
    allow_weak: bool = False,
) -> float:
    """Log the pad row's norm relative to the table's median; warn if small,
    refuse if (nearly) zero.

    A near-zero pad target is learnable and scored correctly (embedding-space
    decoding compares against the pad vector), but the projector then emits
    near-zero vectors at pad positions, which the LLM's first RMSNorm scales
    up to unit size: so below :data:`PAD_NORM_MIN_RATIO` this refuses unless
    ``allow_weak``. :returns: the ratio.

    :raises WeakPadRowError: below :data:`PAD_NORM_MIN_RATIO` without
        ``allow_weak``.
    """
    norm, median = row_norm_and_median(table, pad_idx)
    ratio = norm / median if median > 0 else float("inf")

    log.info(
        "Pad target of {}: '{}' (id {}), row norm {:.3g} = {:.3g} x the median row norm {:.3g}.",
        card_name,
        pad_token,
        pad_idx,
        norm,
        ratio,
        median,
    )

    if ratio < PAD_NORM_MIN_RATIO and not allow_weak:
        raise WeakPadRowError(
            f"The pad target of {card_name}, '{pad_token}' (id {pad_idx}), has a row norm of {norm:.3g}, {ratio:.3g} x the median row norm {median:.3g} (the minimum is {PAD_NORM_MIN_RATIO} x): it is an untrained (reserved) token, and stage 1 would teach the projector to emit near-zero vectors at every pad position. Pad with a trained row instead: set `target_llm.pad_token` to another single token of the tokenizer (e.g. `--config target_llm.pad_token='<|eot_id|>'` for Llama 3.1; the same value in stage 1 and stage 2), or override `{PAD_TOKEN_FIELD}` in a `@user` card; or train on this row anyway with `target_llm.allow_weak_pad_row=true`."
        )

    if ratio < PAD_NORM_WARN_RATIO:
        log.warning(
            "The pad row of {} ('{}', id {}) has {:.3g} x the median row norm: it is likely an untrained (reserved) token. Stage 1 then teaches the projector to emit near-zero vectors at pad positions. To pad with a trained row, set `pad_token` (e.g. '<|eot_id|>' for Llama 3.1) in the recipe's `target_llm` section or `speechmapper_pad_token` in the card.",
            card_name,
            pad_token,
            pad_idx,
            ratio,
        )

    return ratio


def resolve_pad_token(
    card: AssetCard, tokenizer: Tokenizer, pad_token: str | None
) -> tuple[str, int]:
    """The pad token and its id: ``pad_token`` if given, else the card's
    ``speechmapper_pad_token``, else the tokenizer's pad token."""
    if pad_token is not None:
        origin = "`pad_token`"
    else:
        pad_token = read_pad_token(card)
        origin = f"`{PAD_TOKEN_FIELD}` of the {card.name} asset card"

    if pad_token is None:
        pad_idx = tokenizer.vocab_info.pad_idx
        if pad_idx is None:
            raise TargetLLMCardError(
                f"No pad token for {card.name}: the tokenizer defines none. Set `{PAD_TOKEN_FIELD}` in the card or pass `pad_token` (e.g. '<|finetune_right_pad_id|>' for Llama 3.1, '</s>' for EuroLLM)."
            )

        return id_to_token(tokenizer, pad_idx), pad_idx

    try:
        return pad_token, token_to_id(tokenizer, pad_token)
    except UnknownTokenError:
        raise TargetLLMCardError(
            f"The pad token '{pad_token}' ({origin}) is not a token of the {card.name} tokenizer; name a single (special) token of its vocabulary."
        ) from None


def _special_idx(card: AssetCard, what: str, idx: int | None) -> int:
    if idx is None:
        raise TargetLLMCardError(
            f"{what} was requested, but the tokenizer of {card.name} defines no {what} token."
        )

    return idx


def _check_tokenizer_fits(
    card: AssetCard, tokenizer: Tokenizer, num_embeddings: int, where: str
) -> None:
    largest = max_token_id(tokenizer)
    if largest >= num_embeddings:
        raise TargetLLMCardError(
            f"The tokenizer of {card.name} can produce token id {largest}, but the embedding table in {where} has only {num_embeddings} rows: the tokenizer and the checkpoint do not belong together."
        )


def _check_model_config(card: AssetCard, shape: tuple[int, ...], where: str) -> None:
    """The table must have the shape the card's model config promises (if any)."""
    config = maybe_model_config_of(card)
    if config is None:
        return

    expected = {
        "vocab_size": getattr(config, "vocab_size", None),
        "model_dim": getattr(config, "model_dim", None),
    }
    actual = {"vocab_size": shape[0], "model_dim": shape[1]}

    wrong = {k: v for k, v in expected.items() if v is not None and v != actual[k]}
    if wrong:
        raise TargetLLMCardError(
            f"The embedding table in {where} is {list(shape)}, but the model config of the {card.name} asset card says {wrong}: the card and its checkpoint disagree."
        )
