"""Token-level questions about a fairseq2 :class:`Tokenizer` that its API leaves open.

fairseq2's tokenizers differ in what they expose: the Hugging Face backed ones
(the ``llama`` family with ``impl: hg`` and the ``hg`` family) wrap a
``transformers`` tokenizer that knows every added/special token; the others
only offer encoders, decoders and :class:`VocabularyInfo`. These helpers use
the Hugging Face tokenizer where there is one and fall back to round-trips
through the encoder otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from fairseq2.data.tokenizers import TokenDecoder, Tokenizer
from fairseq2.data.tokenizers.hg import HuggingFaceTokenDecoder, HuggingFaceTokenModel


class UnknownTokenError(ValueError):
    """A token the configuration names is not a single token of the tokenizer."""


def hf_token_model(tokenizer: Tokenizer) -> HuggingFaceTokenModel | None:
    """The Hugging Face token model behind ``tokenizer``, if it has one.

    Both fairseq2 classes that wrap one keep it in ``_model`` (``HgTokenizer``
    also exposes it as ``.model``).
    """
    model = getattr(tokenizer, "_model", None)
    if isinstance(model, HuggingFaceTokenModel):
        return model

    return None


def hf_tokenizer(tokenizer: Tokenizer) -> Any | None:
    """The ``transformers`` tokenizer behind ``tokenizer``, if it has one."""
    model = hf_token_model(tokenizer)
    if model is None:
        return None

    return model._tok


def token_to_id(tokenizer: Tokenizer, token: str) -> int:
    """The id of ``token``, which must be one token of the vocabulary (e.g. a
    special token such as ``<|eot_id|>``); raises :class:`UnknownTokenError`."""
    hf = hf_tokenizer(tokenizer)
    if hf is not None:
        idx = hf.convert_tokens_to_ids(token)
        if isinstance(idx, int) and hf.convert_ids_to_tokens(idx) == token:
            return idx
    else:
        ids = tokenizer.create_raw_encoder()(token)
        decoder = tokenizer.create_decoder(skip_special_tokens=False)
        if ids.numel() == 1 and decoder(ids) == token:
            return int(ids[0])

    raise UnknownTokenError(
        f"'{token}' is not a token of the tokenizer (it does not encode to one id that decodes back to it)."
    )


def max_token_id(tokenizer: Tokenizer) -> int:
    """The largest token id ``tokenizer`` can produce.

    For Hugging Face tokenizers this counts added tokens (Llama 3: 128000
    regular + 256 special = 128256), which ``vocab_info.size`` leaves out.
    """
    info = tokenizer.vocab_info

    candidates = [info.size - 1]
    for idx in (
        info.unk_idx,
        info.bos_idx,
        info.eos_idx,
        info.pad_idx,
        info.boh_idx,
        info.eoh_idx,
    ):
        if idx is not None:
            candidates.append(idx)

    hf = hf_tokenizer(tokenizer)
    if hf is not None:
        candidates.append(len(hf) - 1)
        added = getattr(hf, "added_tokens_decoder", None)
        if added:
            candidates.append(max(added))

    return max(candidates)


def create_text_decoder(tokenizer: Tokenizer) -> TokenDecoder:
    """A decoder that drops special tokens (for WER/BLEU on decoded text).

    fairseq2's ``HgTokenizer`` caches the first decoder it creates, whatever
    ``skip_special_tokens`` was, so for Hugging Face tokenizers we build our own.
    """
    model = hf_token_model(tokenizer)
    if model is not None:
        return HuggingFaceTokenDecoder(model, skip_special_tokens=True)

    return tokenizer.create_decoder(skip_special_tokens=True)


def id_to_token(tokenizer: Tokenizer, idx: int) -> str:
    """The token string of ``idx`` (special tokens included)."""
    hf = hf_tokenizer(tokenizer)
    if hf is not None:
        token = hf.convert_ids_to_tokens(idx)
        if isinstance(token, str):
            return token

    decoder = tokenizer.create_decoder(skip_special_tokens=False)
    return decoder(torch.tensor([idx]))
