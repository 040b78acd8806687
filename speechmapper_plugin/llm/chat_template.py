"""The chat templates of the target LLMs, in one place.

Stage 2 and inference put the projector's speech embeddings inside the LLM's own
chat format, at :data:`SPEECH_PLACEHOLDER` in the user turn. A template here is
plain data: the turn strings with their special tokens spelled out, so that the
prompt can be encoded with any fairseq2 tokenizer (Hugging Face, tiktoken) and
checked token by token against the tokenizer's own ``apply_chat_template``.

The card field ``speechmapper_chat_template`` picks the template.

Templates:

- ``llama3``: Llama 3.x Instruct as fairseq2 formats it (``LLAMA3_HG_CHAT_TEMPLATE``
  in ``fairseq2.models.llama.tokenizer``): ``<|begin_of_text|>``, an optional
  system turn, the user turn, the assistant header; contents are trimmed. Meta's
  own template also always inserts a system turn with "Cutting Knowledge Date:
  December 2023 / Today Date: <date>"; we leave it out by default because it
  makes every prompt depend on a date and fairseq2's recipes do not use it.
- ``llama3_1``: Meta's Llama 3.1 Instruct format exactly (no tools): always a
  system turn that starts with the knowledge-cutoff header and the template's
  default date, 26 Jul 2024.
- ``qwen_chatml``: Qwen2.5 Instruct's ChatML: no BOS, and without a system
  prompt its template's default system turn ("You are Qwen, created by
  Alibaba Cloud. You are a helpful assistant.").
- ``mistral``: Mistral-7B-Instruct-v0.3's format without tools:
  ``<s>[INST] {user}[/INST]``, the system prompt (if any) inside the user turn
  before the user content (``[INST] {system}\n\n{user}[/INST]``), responses
  ``" " + content|trim + "</s>"``; user and system contents are not trimmed.
  ``[/INST]`` is modelled as the assistant header (the text is the same), so a
  response tokenizes after it as in the full conversation.
- ``chatml``: EuroLLM-9B-Instruct's ChatML (``<|im_start|>role\\n...<|im_end|>\\n``),
  after the ``<s>`` BOS that EuroLLM's tokenizer puts before every text; the
  system turn only when a system prompt is given (``""`` gives an empty one,
  as in the EuroLLM-1.7B-Instruct card's example prompt); contents are not
  trimmed. Checked against the EuroLLM model cards' published prompts
  (tests/test_llm_chat_template.py); the 9B ``tokenizer_config.json``
  template itself could not be retrieved to compare with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

from fairseq2.assets import AssetCard

from speechmapper_plugin.llm.cards import (
    CHAT_TEMPLATE_FIELD,
    TargetLLMCardError,
    read_chat_template_name,
    retrieve_llm_card,
)

SPEECH_PLACEHOLDER: Final = "<speech>"
"""Marks where the speech embeddings go in the user content of a prompt."""

_CONTENT: Final = "{content}"


@dataclass(frozen=True, kw_only=True)
class ChatTemplate:
    """A single-turn chat format: optional system turn, user turn, assistant header."""

    name: str

    add_bos: bool
    """Start the prompt with the tokenizer's BOS token."""

    system_turn: str
    """The system turn; ``{content}`` stands for the system prompt."""

    user_turn: str
    """The user turn, end-of-turn token included; ``{content}`` stands for the
    user content (instruction + speech placeholder)."""

    assistant_start: str
    """What opens the assistant turn (the generation prompt)."""

    end_of_turn: str
    """The token that closes a turn; responses end with it (stage-2 targets)."""

    stop_tokens: tuple[str, ...]
    """Generation stops on any of these that the tokenizer knows."""

    special_tokens: tuple[str, ...]
    """Every special token the strings above use; each must be one token of the
    tokenizer, or the template does not belong to it."""

    default_system: str | None = None
    """The system content used when no system prompt is given; ``None`` omits
    the system turn."""

    system_preamble: str = ""
    """Text that precedes the system content inside the system turn."""

    trim_content: bool = False
    """Strip surrounding whitespace from the system, user and assistant contents,
    as Llama's templates do (``| trim``)."""

    system_in_user_turn: bool = False
    """Put the rendered ``system_turn`` at the start of the user content
    instead of before the user turn (Mistral's templates)."""

    response_prefix: str = ""
    """Text between the assistant header and the response (Mistral: a space)."""

    trim_response: bool | None = None
    """Strip the response; ``None`` follows ``trim_content``."""

    def clean(self, content: str) -> str:
        return content.strip() if self.trim_content else content

    def response_text(self, response: str) -> str:
        """The assistant turn after its header, end-of-turn token included."""
        trim = self.trim_content if self.trim_response is None else self.trim_response
        content = response.strip() if trim else response
        return self.response_prefix + content + self.end_of_turn

    def render(self, user_content: str, system: str | None = None) -> str:
        """The prompt text after the BOS token, special tokens spelled out."""
        parts = []

        user = self.clean(user_content)

        system_content = system if system is not None else self.default_system
        if system_content is not None:
            content = self.system_preamble + self.clean(system_content)
            system_text = self.system_turn.replace(_CONTENT, content)
            if self.system_in_user_turn:
                user = system_text + user
            else:
                parts.append(system_text)

        parts.append(self.user_turn.replace(_CONTENT, user))
        parts.append(self.assistant_start)

        return "".join(parts)


LLAMA3_TEMPLATE: Final = ChatTemplate(
    name="llama3",
    add_bos=True,
    system_turn="<|start_header_id|>system<|end_header_id|>\n\n{content}<|eot_id|>",
    user_turn="<|start_header_id|>user<|end_header_id|>\n\n{content}<|eot_id|>",
    assistant_start="<|start_header_id|>assistant<|end_header_id|>\n\n",
    end_of_turn="<|eot_id|>",
    stop_tokens=("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
    special_tokens=("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    trim_content=True,
)

LLAMA3_1_TEMPLATE: Final = replace(
    LLAMA3_TEMPLATE,
    name="llama3_1",
    default_system="",
    system_preamble="Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n",
)

CHATML_TEMPLATE: Final = ChatTemplate(
    name="chatml",
    add_bos=True,
    system_turn="<|im_start|>system\n{content}<|im_end|>\n",
    user_turn="<|im_start|>user\n{content}<|im_end|>\n",
    assistant_start="<|im_start|>assistant\n",
    end_of_turn="<|im_end|>",
    stop_tokens=("<|im_end|>", "</s>"),
    special_tokens=("<|im_start|>", "<|im_end|>"),
)

QWEN_CHATML_TEMPLATE: Final = replace(
    CHATML_TEMPLATE,
    name="qwen_chatml",
    add_bos=False,
    default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
    stop_tokens=("<|im_end|>", "<|endoftext|>"),
)

MISTRAL_TEMPLATE: Final = ChatTemplate(
    name="mistral",
    add_bos=True,
    system_turn="{content}\n\n",
    system_in_user_turn=True,
    user_turn="[INST] {content}",
    assistant_start="[/INST]",
    response_prefix=" ",
    trim_response=True,
    end_of_turn="</s>",
    stop_tokens=("</s>",),
    special_tokens=("[INST]", "[/INST]"),
)

CHAT_TEMPLATES: Final = {
    t.name: t
    for t in (
        LLAMA3_TEMPLATE,
        LLAMA3_1_TEMPLATE,
        CHATML_TEMPLATE,
        QWEN_CHATML_TEMPLATE,
        MISTRAL_TEMPLATE,
    )
}


def get_chat_template(name: str) -> ChatTemplate:
    """The template called ``name``; raises ``ValueError`` listing the known ones."""
    template = CHAT_TEMPLATES.get(name)
    if template is None:
        raise ValueError(
            f"Unknown chat template '{name}'; known templates: {sorted(CHAT_TEMPLATES)}."
        )

    return template


def chat_template_for_card(card: AssetCard | str) -> ChatTemplate:
    """The template a target-LLM card names in ``speechmapper_chat_template``."""
    card = retrieve_llm_card(card)

    name = read_chat_template_name(card)
    if name is None:
        raise TargetLLMCardError(
            f"The {card.name} asset card has no `{CHAT_TEMPLATE_FIELD}` field; add one of {sorted(CHAT_TEMPLATES)}."
        )

    try:
        return get_chat_template(name)
    except ValueError as ex:
        raise TargetLLMCardError(f"The {card.name} asset card: {ex}") from None
