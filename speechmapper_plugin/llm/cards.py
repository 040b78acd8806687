"""Target-LLM asset cards: the plugin's own card fields and checkpoint resolution.

A target-LLM card is an ordinary fairseq2 model card (``model_family``,
``checkpoint``, ``tokenizer``, ...) plus two fields only this plugin reads:

- ``speechmapper_pad_token``: the token whose embedding pads stage-1 targets;
- ``speechmapper_chat_template``: the name of the chat template (see
  :mod:`speechmapper_plugin.llm.chat_template`) that stage 2 and inference use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fairseq2.assets import AssetCard, get_asset_download_manager, get_asset_store
from fairseq2.utils.uri import Uri

from speechmapper_plugin.models.card_config import maybe_model_config_of

PAD_TOKEN_FIELD: Final = "speechmapper_pad_token"
CHAT_TEMPLATE_FIELD: Final = "speechmapper_chat_template"


class TargetLLMCardError(ValueError):
    """A target-LLM card is unknown or lacks what the plugin needs."""


def retrieve_llm_card(card: AssetCard | str) -> AssetCard:
    """Return ``card``, looking it up in fairseq2's asset store if given by name."""
    if isinstance(card, AssetCard):
        return card

    store = get_asset_store()

    found = store.maybe_retrieve_card(card)
    if found is None:
        raise TargetLLMCardError(
            f"No asset card named '{card}'. Check the name with `python -m fairseq2.assets list`, or add a card (see assets/models/target_llms.yaml)."
        )

    return found


def _optional_str_field(card: AssetCard, name: str) -> str | None:
    field = card.maybe_get_field(name)
    if field is None:
        return None

    value = field.value
    if not isinstance(value, str) or not value:
        raise TargetLLMCardError(
            f"`{name}` of the {card.name} asset card must be a non-empty string, but is {value!r}."
        )

    return value


def read_llm_config(card: AssetCard | str) -> object:
    """The LLM's model config from its card, without loading any weight."""
    card = retrieve_llm_card(card)

    config = maybe_model_config_of(card)
    if config is None:
        raise TargetLLMCardError(f"The {card.name} asset card names no `model_family`.")
    return config


def _read_int(card: AssetCard | str, name: str) -> int:
    value = getattr(read_llm_config(card), name, None)
    if not isinstance(value, int):
        card_name = card if isinstance(card, str) else card.name
        raise TargetLLMCardError(
            f"The model config of {card_name} has no integer `{name}`; it is not a decoder-only LLM this plugin supports."
        )
    return value


def read_llm_embed_dim(card: AssetCard | str) -> int:
    """The LLM's embedding width, read from its card (so that mismatches are
    caught before any heavy work)."""
    return _read_int(card, "model_dim")


def read_llm_max_seq_len(card: AssetCard | str) -> int:
    """The longest sequence the LLM accepts, read from its card."""
    return _read_int(card, "max_seq_len")


def read_pad_token(card: AssetCard) -> str | None:
    """The card's ``speechmapper_pad_token`` (inherited along ``base``), if any."""
    return _optional_str_field(card, PAD_TOKEN_FIELD)


def read_chat_template_name(card: AssetCard) -> str | None:
    """The card's ``speechmapper_chat_template`` (inherited along ``base``), if any."""
    return _optional_str_field(card, CHAT_TEMPLATE_FIELD)


def resolve_checkpoint_path(card: AssetCard) -> Path:
    """The local path of the card's ``checkpoint`` (+ ``checkpoint_path``).

    Resolved exactly as fairseq2's model loader does: through the
    ``AssetDownloadManager``, so ``hg://`` checkpoints are fetched into
    (or found in) the Hugging Face cache with the user's credentials, and
    ``file://`` URIs and plain paths (relative to the card's YAML file) are
    used in place.
    """
    field = card.maybe_get_field("checkpoint")
    if field is None:
        raise TargetLLMCardError(
            f"The {card.name} asset card has no `checkpoint` field. Gated models (e.g. fairseq2's bundled Llama cards) need a card that names one, such as `checkpoint: hg://meta-llama/Llama-3.1-8B-Instruct`."
        )

    path = _download(field.as_uri(), f"the {card.name} asset card")

    sub_path = _optional_str_field(card, "checkpoint_path")
    if sub_path is not None:
        path = path.joinpath(sub_path)

    return path


def resolve_checkpoint_uri(uri: str) -> Path:
    """The local path of a checkpoint URI (``hg://org/repo``, ``file:///...``)."""
    parsed = Uri.maybe_parse(uri)
    if parsed is None:
        raise TargetLLMCardError(f"'{uri}' is not a valid URI.")

    return _download(parsed, f"'{uri}'")


def _download(uri: Uri, what: str) -> Path:
    manager = get_asset_download_manager()
    if uri.scheme not in manager.supported_schemes:
        raise TargetLLMCardError(
            f"The checkpoint URI scheme '{uri.scheme}' of {what} is not supported; use one of {sorted(manager.supported_schemes)} or a path."
        )

    if uri.scheme == "file":
        return uri.to_path()

    return manager.download_model(uri)
