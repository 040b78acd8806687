"""Our chat templates produce exactly the ids of the tokenizers' own chat formatting.

The speech placeholder is compared with a special token in its place (an atomic
item, like the speech embeddings): then the reference ``apply_chat_template``
must give ``prefix_ids + [that token] + suffix_ids``. For Llama 3 the same also
holds with plain text in place of the speech when the text starts a new
pre-token (after a newline), since its pre-tokenizer splits there.
"""

from __future__ import annotations

from typing import Any

import pytest
from fairseq2.assets import AssetCard
from fairseq2.data.tokenizers import Tokenizer, load_tokenizer

from speechmapper_plugin.llm import (
    CHATML_TEMPLATE,
    LLAMA3_1_TEMPLATE,
    LLAMA3_TEMPLATE,
    MISTRAL_TEMPLATE,
    QWEN_CHATML_TEMPLATE,
    SPEECH_PLACEHOLDER,
    ChatTemplate,
    TargetLLMCardError,
    chat_template_for_card,
    encode_response,
    encode_speech_prompt,
    encode_text_prompt,
    get_chat_template,
    stop_token_ids,
    token_to_id,
)
from tests.support.cards import SessionCards

INSTRUCTIONS = [
    f"Transcribe the audio.\n{SPEECH_PLACEHOLDER}",
    f"{SPEECH_PLACEHOLDER}\nRepeat what was said.",
    f"Translate the speech into German: {SPEECH_PLACEHOLDER} Answer in German.",
    f"  {SPEECH_PLACEHOLDER}  ",
]
SYSTEMS = [None, "You are a helpful assistant."]
RESPONSES = ["The old dog saw a bird near the river.", "  Der Hund.  "]


@pytest.fixture(scope="module")
def llama(test_cards: SessionCards) -> Tokenizer:
    return load_tokenizer(test_cards.llms.llama_card)


@pytest.fixture(scope="module")
def eurollm(test_cards: SessionCards) -> Tokenizer:
    return load_tokenizer(test_cards.llms.eurollm_card)


def reference_ids(
    apply_chat_template: Any,
    user: str,
    system: str | None,
    response: str | None = None,
) -> list[int]:
    messages = [] if system is None else [{"role": "system", "content": system}]
    messages.append({"role": "user", "content": user})
    if response is not None:
        messages.append({"role": "assistant", "content": response})

    ids = apply_chat_template(
        messages, add_generation_prompt=response is None, tokenize=True
    )
    if isinstance(ids, dict):  # newer transformers return a BatchEncoding
        ids = ids["input_ids"]
    return list(ids)


def fairseq2_chat(tokenizer: Tokenizer) -> Any:
    """fairseq2's own chat formatting (the llama family overwrites the HF template
    with fairseq2's ``LLAMA3_HG_CHAT_TEMPLATE``)."""
    return tokenizer.create_raw_encoder().apply_chat_template  # type: ignore[attr-defined]


def hf_chat(directory: object) -> Any:
    """The chat template shipped in the checkpoint's ``tokenizer_config.json``."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(directory).apply_chat_template


def check_prompt_parity(
    tokenizer: Tokenizer,
    template: ChatTemplate,
    apply_chat_template: Any,
    stand_in: str,
) -> None:
    stand_in_id = token_to_id(tokenizer, stand_in)

    for user in INSTRUCTIONS:
        for system in SYSTEMS:
            prompt = encode_speech_prompt(tokenizer, template, user, system)

            expected = reference_ids(
                apply_chat_template, user.replace(SPEECH_PLACEHOLDER, stand_in), system
            )
            ours = [*prompt.prefix_ids, stand_in_id, *prompt.suffix_ids]

            assert ours == expected, (template.name, user, system)


def test_llama3_template_matches_fairseq2_chat_formatting(llama: Tokenizer) -> None:
    check_prompt_parity(
        llama, LLAMA3_TEMPLATE, fairseq2_chat(llama), "<|reserved_special_token_0|>"
    )


def test_llama3_1_template_matches_meta_chat_formatting(
    llama: Tokenizer, test_cards: SessionCards
) -> None:
    check_prompt_parity(
        llama,
        LLAMA3_1_TEMPLATE,
        hf_chat(test_cards.llms.llama_dir),
        "<|reserved_special_token_0|>",
    )


def test_chatml_template_matches_eurollm_chat_formatting(
    eurollm: Tokenizer, test_cards: SessionCards
) -> None:
    # EuroLLM has no spare special token: an unused role token stands in.
    check_prompt_parity(
        eurollm, CHATML_TEMPLATE, hf_chat(test_cards.llms.eurollm_dir), "<unk>"
    )


# EuroLLM's own prompt text, as the EuroLLM team published it: the usage
# example of the EuroLLM-1.7B-Instruct model card,
# https://huggingface.co/utter-project/EuroLLM-1.7B-Instruct (README.md, as
# mirrored at README commit 16dbc195ca87be1be1a44df504eb6b31c8840162), which
# tokenizes this string with the model's tokenizer (which prepends <s>):
#   text = '<|im_start|>system\n<|im_end|>\n<|im_start|>user\nTranslate the
#   following English source text to Portuguese:\nEnglish: I am a language model
#   for european languages. \nPortuguese: <|im_end|>\n<|im_start|>assistant\n'
EUROLLM_CARD_USER = (
    "Translate the following English source text to Portuguese:\n"
    "English: I am a language model for european languages. \nPortuguese: "
)
EUROLLM_CARD_PROMPT = (
    "<|im_start|>system\n<|im_end|>\n"
    f"<|im_start|>user\n{EUROLLM_CARD_USER}<|im_end|>\n"
    "<|im_start|>assistant\n"
)
# The EuroLLM-9B-Instruct model card
# (https://huggingface.co/utter-project/EuroLLM-9B-Instruct, revision
# f7ae2bc3bcbb538c0b93fa6cfbf388d9898b1ace) formats this conversation with
# `apply_chat_template(..., add_generation_prompt=True)`:
EUROLLM_9B_CARD_SYSTEM = (
    "You are EuroLLM --- an AI assistant specialized in European languages "
    "that provides safe, educational and helpful answers."
)
EUROLLM_9B_CARD_USER = "What is the capital of Portugal? How would you describe it?"


def test_chatml_template_renders_eurollm_published_prompts(
    eurollm: Tokenizer, test_cards: SessionCards
) -> None:
    """``chatml`` against the EuroLLM team's own prompt text, not against a
    template written here.

    The verbatim ``chat_template`` of EuroLLM-9B-Instruct's
    ``tokenizer_config.json`` could not be retrieved here (the model is gated;
    no mirror of that file was found), so the reference is the best published
    source found: the literal prompt of the EuroLLM-1.7B-Instruct card (same
    team, same ChatML tokens, same instruction data), quoted above, and the
    9B card's system + user example laid out the same way. They fix the turns,
    newlines, the BOS and an (empty) system turn; what the 9B template does
    when no system message is given is not published in them (ours: no system
    turn), so that case is not checked against a published source.
    """
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(test_cards.llms.eurollm_dir)
    bos = token_to_id(eurollm, "<s>")

    # The 1.7B card's prompt: an empty system turn, then the user turn.
    assert CHATML_TEMPLATE.render(EUROLLM_CARD_USER, system="") == EUROLLM_CARD_PROMPT
    ours = encode_text_prompt(eurollm, CHATML_TEMPLATE, EUROLLM_CARD_USER, system="")
    published = hf(EUROLLM_CARD_PROMPT, add_special_tokens=False)["input_ids"]
    assert list(ours) == [bos, *published]

    # The 9B card's conversation, with its system message.
    expected = (
        f"<|im_start|>system\n{EUROLLM_9B_CARD_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{EUROLLM_9B_CARD_USER}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    rendered = CHATML_TEMPLATE.render(EUROLLM_9B_CARD_USER, EUROLLM_9B_CARD_SYSTEM)
    assert rendered == expected
    ours = encode_text_prompt(
        eurollm, CHATML_TEMPLATE, EUROLLM_9B_CARD_USER, EUROLLM_9B_CARD_SYSTEM
    )
    assert list(ours) == [bos, *hf(expected, add_special_tokens=False)["input_ids"]]

    # Control: the special tokens are single ids in both encodings, so a
    # template with another turn layout would not give these ids.
    assert published.count(token_to_id(eurollm, "<|im_start|>")) == 3
    assert published.count(token_to_id(eurollm, "<|im_end|>")) == 2


@pytest.fixture(scope="module")
def mistral(test_cards: SessionCards) -> Tokenizer:
    return load_tokenizer("test_mistral")


def test_mistral_template_matches_mistral_chat_formatting(
    mistral: Tokenizer, test_cards: SessionCards
) -> None:
    # A reserved control token stands in for the speech.
    check_prompt_parity(
        mistral, MISTRAL_TEMPLATE, hf_chat(test_cards.mistral_dir), "[control_8]"
    )


def test_mistral_responses_tokenize_as_in_the_conversation(
    mistral: Tokenizer, test_cards: SessionCards
) -> None:
    # Without a system prompt: Mistral's template puts the system message into
    # the *last* user turn only, so a conversation that ends with the response
    # drops it (the prompt for generation keeps it, as tested above).
    apply = hf_chat(test_cards.mistral_dir)
    for response in RESPONSES:
        user = "Transcribe the audio. [control_8]"
        prompt = reference_ids(apply, user, None)
        full = reference_ids(apply, user, None, response)
        ids = encode_response(mistral, MISTRAL_TEMPLATE, response)
        assert full == prompt + list(ids), response
        assert ids[-1] == token_to_id(mistral, "</s>")


def test_mistral_card_template_and_stop_ids(mistral: Tokenizer) -> None:
    assert chat_template_for_card("test_mistral") is MISTRAL_TEMPLATE
    assert get_chat_template("mistral") is MISTRAL_TEMPLATE
    assert stop_token_ids(mistral, MISTRAL_TEMPLATE) == (2,)


def test_qwen_template_matches_qwen25_chat_formatting(
    test_cards: SessionCards,
) -> None:
    # fairseq2's `qwen` tokenizer family, as the Qwen2.5 card loads it; the
    # reference is Qwen2.5-Instruct's own template (default system turn), not
    # fairseq2's replacement template, which leaves that turn out.
    qwen = load_tokenizer("test_qwen_tokenizer")
    assert chat_template_for_card("test_qwen_tokenizer") is QWEN_CHATML_TEMPLATE
    check_prompt_parity(
        qwen,
        QWEN_CHATML_TEMPLATE,
        hf_chat(test_cards.root / "qwen"),
        "<|object_ref_start|>",
    )
    apply = hf_chat(test_cards.root / "qwen")
    for system in SYSTEMS:
        for response in RESPONSES:
            user = "Transcribe the audio. <|object_ref_start|>"
            prompt = reference_ids(apply, user, system)
            full = reference_ids(apply, user, system, response)
            ids = encode_response(qwen, QWEN_CHATML_TEMPLATE, response)
            # The template ends every turn with a newline after <|im_end|>.
            assert full == prompt + list(ids) + [full[-1]], (system, response)


def test_llama3_prompt_with_text_in_place_of_the_speech(llama: Tokenizer) -> None:
    encoder = llama.create_raw_encoder()
    prompt = encode_speech_prompt(
        llama, LLAMA3_TEMPLATE, f"Transcribe the audio.\n{SPEECH_PLACEHOLDER}"
    )

    text = "The old dog saw a bird near the river."
    expected = reference_ids(
        fairseq2_chat(llama), f"Transcribe the audio.\n{text}", None
    )

    assert [*prompt.prefix_ids, *encoder(text).tolist(), *prompt.suffix_ids] == expected
    assert prompt.prefix_ids[0] == llama.vocab_info.bos_idx
    assert prompt.text.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


@pytest.mark.parametrize("which", ["llama3", "chatml"])
def test_responses_continue_the_prompt_as_in_the_full_conversation(
    which: str, llama: Tokenizer, eurollm: Tokenizer, test_cards: SessionCards
) -> None:
    tokenizer, template, chat, stand_in = {
        "llama3": (
            llama,
            LLAMA3_TEMPLATE,
            fairseq2_chat(llama),
            "<|reserved_special_token_0|>",
        ),
        "chatml": (
            eurollm,
            CHATML_TEMPLATE,
            hf_chat(test_cards.llms.eurollm_dir),
            "<unk>",
        ),
    }[which]

    stand_in_id = token_to_id(tokenizer, stand_in)
    user = f"Transcribe the audio.\n{SPEECH_PLACEHOLDER}"

    for response in RESPONSES:
        prompt = encode_speech_prompt(tokenizer, template, user)
        response_ids = encode_response(tokenizer, template, response)

        assert response_ids[-1] == token_to_id(tokenizer, template.end_of_turn)

        ours = [*prompt.prefix_ids, stand_in_id, *prompt.suffix_ids, *response_ids]
        full = reference_ids(
            chat, user.replace(SPEECH_PLACEHOLDER, stand_in), None, response
        )

        # ChatML closes every turn with a newline after <|im_end|>; generation
        # stops at <|im_end|>, so the response ends there.
        assert full[: len(ours)] == ours
        newline = tokenizer.create_raw_encoder()(template.end_of_turn + "\n")[1:]
        rest = newline.tolist() if which == "chatml" else []
        assert full[len(ours) :] == rest


def test_stop_token_ids(llama: Tokenizer, eurollm: Tokenizer) -> None:
    assert stop_token_ids(llama, LLAMA3_TEMPLATE) == tuple(
        token_to_id(llama, t) for t in ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
    )
    assert stop_token_ids(eurollm, CHATML_TEMPLATE) == (4, 2)  # <|im_end|>, </s>


@pytest.mark.parametrize(
    "user", ["Transcribe the audio.", f"{SPEECH_PLACEHOLDER} and {SPEECH_PLACEHOLDER}"]
)
def test_user_content_needs_exactly_one_placeholder(
    llama: Tokenizer, user: str
) -> None:
    with pytest.raises(ValueError, match="exactly once"):
        encode_speech_prompt(llama, LLAMA3_TEMPLATE, user)


def test_placeholder_in_the_system_prompt_is_rejected(llama: Tokenizer) -> None:
    with pytest.raises(ValueError, match="system prompt must not contain"):
        encode_speech_prompt(
            llama,
            LLAMA3_TEMPLATE,
            SPEECH_PLACEHOLDER,
            system=f"Hear {SPEECH_PLACEHOLDER}",
        )


def test_template_of_another_llm_is_rejected(
    eurollm: Tokenizer, llama: Tokenizer
) -> None:
    with pytest.raises(ValueError, match="speechmapper_chat_template"):
        encode_speech_prompt(eurollm, LLAMA3_TEMPLATE, SPEECH_PLACEHOLDER)
    with pytest.raises(ValueError, match="speechmapper_chat_template"):
        encode_response(llama, CHATML_TEMPLATE, "Hello.")


def test_templates_come_from_the_cards(test_cards: SessionCards) -> None:
    assert chat_template_for_card(test_cards.llms.llama_card) is LLAMA3_TEMPLATE
    assert chat_template_for_card(test_cards.llms.eurollm_card) is CHATML_TEMPLATE
    assert get_chat_template("llama3_1") is LLAMA3_1_TEMPLATE

    with pytest.raises(ValueError, match="known templates"):
        get_chat_template("vicuna")

    unknown = AssetCard("bad_llm", {"speechmapper_chat_template": "vicuna"})
    with pytest.raises(TargetLLMCardError, match="known templates"):
        chat_template_for_card(unknown)

    missing = AssetCard("bare_llm", {})
    with pytest.raises(TargetLLMCardError, match="speechmapper_chat_template"):
        chat_template_for_card(missing)
