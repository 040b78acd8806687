"""Token ids around the speech embeddings: prompt prefix/suffix, responses, stop ids.

The LLM input of stage 2 and inference is
``prefix_ids ++ speech embeddings ++ suffix_ids [++ response ids]``.

The speech embeddings are an atomic, non-text item, so the text on either side
is tokenized as if a special token stood at the placeholder: the suffix is
encoded after an anchor special token that is then dropped. This reproduces the
tokenizer's own chat formatting exactly with a special token in place of the
speech, and never lets a subword merge straddle the speech.
"""

from __future__ import annotations

from dataclasses import dataclass

from fairseq2.data.tokenizers import Tokenizer

from speechmapper_plugin.llm.chat_template import SPEECH_PLACEHOLDER, ChatTemplate
from speechmapper_plugin.llm.tokens import (
    UnknownTokenError,
    id_to_token,
    token_to_id,
)


@dataclass(frozen=True)
class SpeechPrompt:
    """The token ids before and after the speech embeddings of one prompt."""

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    text: str
    """The rendered prompt (after BOS) with the placeholder, for logs."""


def encode_speech_prompt(
    tokenizer: Tokenizer,
    template: ChatTemplate,
    user_content: str,
    system: str | None = None,
) -> SpeechPrompt:
    """Encode a single-turn prompt whose user content holds :data:`SPEECH_PLACEHOLDER`.

    ``user_content`` is the instruction with the placeholder where the speech
    goes, e.g. ``"Transcribe the audio.\\n<speech>"``; it must contain the
    placeholder exactly once. The result ends with the assistant header, ready
    for generation or for a response.
    """
    problem = placeholder_problem(user_content, "The user content of a speech prompt")
    if problem is None and system is not None:
        problem = no_placeholder_problem(system, "The system prompt")
    if problem is not None:
        raise ValueError(problem)

    _check_template_tokens(tokenizer, template)

    text = template.render(user_content, system)

    prefix_text, suffix_text = text.split(SPEECH_PLACEHOLDER)

    if template.add_bos:
        bos_idx = _bos_idx(tokenizer, template)
        prefix_ids = (bos_idx, *_encode_after(tokenizer, bos_idx, prefix_text))
    else:
        prefix_ids = _encode(tokenizer, prefix_text)

    eot_idx = token_to_id(tokenizer, template.end_of_turn)
    suffix_ids = _encode_after(tokenizer, eot_idx, suffix_text)

    return SpeechPrompt(prefix_ids=prefix_ids, suffix_ids=suffix_ids, text=text)


def placeholder_problem(text: str, where: str) -> str | None:
    """Why ``text`` (a user turn, an instruction template) cannot hold the
    speech: it must contain :data:`SPEECH_PLACEHOLDER` exactly once.

    :param where: What ``text`` is, as the message's subject.
    """
    count = text.count(SPEECH_PLACEHOLDER)
    if count == 1:
        return None

    return f"{where} must contain the placeholder {SPEECH_PLACEHOLDER} exactly once (where the speech goes), but contains it {count} times: {text!r}."


def no_placeholder_problem(text: str, where: str) -> str | None:
    """Why ``text`` (a system prompt, a question) is wrong: it must not contain
    :data:`SPEECH_PLACEHOLDER`, which only the user turn holds, once."""
    if SPEECH_PLACEHOLDER not in text:
        return None

    return f"{where} must not contain the speech placeholder {SPEECH_PLACEHOLDER}: {text!r}."


def encode_text_prompt(
    tokenizer: Tokenizer,
    template: ChatTemplate,
    user_content: str,
    system: str | None = None,
) -> tuple[int, ...]:
    """Encode a single-turn, text-only prompt, ending with the assistant header.

    For the LLM used on its own (an LLM judge, text baselines): the ids equal
    the tokenizer's own chat formatting of ``[system,] user`` with the
    generation prompt.
    """
    _check_template_tokens(tokenizer, template)

    text = template.render(user_content, system)

    if template.add_bos:
        bos_idx = _bos_idx(tokenizer, template)
        return (bos_idx, *_encode_after(tokenizer, bos_idx, text))

    return _encode(tokenizer, text)


def encode_response(
    tokenizer: Tokenizer, template: ChatTemplate, text: str
) -> tuple[int, ...]:
    """The ids of an assistant response, ending with the end-of-turn token.

    These follow the prompt's assistant header directly (stage-2 CE targets).
    They are the tail of ``encode(assistant header + response + end_of_turn)``,
    so they tokenize exactly as in the full conversation; a response whose first
    token would merge with the header raises ``ValueError``.
    """
    _check_template_tokens(tokenizer, template)

    header = _encode(tokenizer, template.assistant_start)
    full = _encode(tokenizer, template.assistant_start + template.response_text(text))

    if full[: len(header)] != header:
        raise ValueError(
            f"The response {text!r} does not tokenize separately from the assistant header {template.assistant_start!r} of the {template.name} template."
        )

    return full[len(header) :]


def stop_token_ids(tokenizer: Tokenizer, template: ChatTemplate) -> tuple[int, ...]:
    """The ids generation stops on: the end-of-turn token first, then the
    template's other stop tokens that the tokenizer knows."""
    ids = [token_to_id(tokenizer, template.end_of_turn)]

    for token in template.stop_tokens:
        try:
            idx = token_to_id(tokenizer, token)
        except UnknownTokenError:
            continue

        if idx not in ids:
            ids.append(idx)

    return tuple(ids)


def _check_template_tokens(tokenizer: Tokenizer, template: ChatTemplate) -> None:
    for token in (*template.special_tokens, template.end_of_turn):
        try:
            token_to_id(tokenizer, token)
        except UnknownTokenError:
            raise ValueError(
                f"The {template.name} chat template uses '{token}', which the tokenizer does not have as a single token: the template does not belong to this LLM. Check `speechmapper_chat_template` of the LLM card."
            ) from None


def _bos_idx(tokenizer: Tokenizer, template: ChatTemplate) -> int:
    bos_idx = tokenizer.vocab_info.bos_idx
    if bos_idx is None:
        raise ValueError(
            f"The {template.name} chat template starts with a BOS token, but the tokenizer has none."
        )

    return bos_idx


def _encode(tokenizer: Tokenizer, text: str) -> tuple[int, ...]:
    if not text:
        return ()

    ids = tokenizer.create_raw_encoder()(text)

    return tuple(int(i) for i in ids.tolist())


def _encode_after(tokenizer: Tokenizer, anchor_idx: int, text: str) -> tuple[int, ...]:
    """Encode ``text`` as it tokenizes right after the special token ``anchor_idx``."""
    if not text:
        return ()

    ids = _encode(tokenizer, id_to_token(tokenizer, anchor_idx) + text)
    if not ids or ids[0] != anchor_idx:
        raise ValueError(
            f"Token {anchor_idx} did not encode as a single special token in front of {text!r}."
        )

    return ids[1:]
