"""Token ids to decoder inputs, the space prompt embeddings live in."""

from __future__ import annotations

from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from torch import Tensor


def embed_token_ids(model: TransformerLM, token_ids: Tensor) -> Tensor:
    """The decoder inputs for ``token_ids`` (``[S]`` or ``[B, S]``).

    Text parts of a prompt (chat-template prefix and suffix) must go through
    the model's own frontend, exactly as generated tokens do during decoding;
    for the llama family that is the embedding table, unscaled. With a 1-D
    input it fits ``llm.assemble_inputs``'s ``embed_tokens`` argument
    (``functools.partial(embed_token_ids, model)``).
    """
    seqs = token_ids.unsqueeze(0) if token_ids.ndim == 1 else token_ids
    embeds, _ = model.decoder_frontend(seqs, BatchLayout.of(seqs))
    return embeds[0] if token_ids.ndim == 1 else embeds
