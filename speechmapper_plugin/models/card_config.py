"""The model configuration an asset card describes, without loading weights.

Every component check that must happen "before any heavy work" (widths, target
LLM, sequence lengths) reads configs through this one function.
"""

from __future__ import annotations

from fairseq2.assets import AssetCard
from fairseq2.models import ModelFamily, maybe_get_model_family_name
from fairseq2.runtime.dependency import get_dependency_resolver


def maybe_model_config_of(card: AssetCard) -> object | None:
    """The card's arch config with its ``model_config`` overrides applied, or
    ``None`` if the card names no model family."""
    family_name = maybe_get_model_family_name(card)
    if family_name is None:
        return None

    family = get_dependency_resolver().resolve(ModelFamily, key=family_name)  # type: ignore[type-abstract]

    config: object = family.get_model_config(card)
    return config


def model_config_of(card: AssetCard) -> object:
    """Like :func:`maybe_model_config_of`, but a card without a model is an error."""
    config = maybe_model_config_of(card)
    if config is None:
        raise ValueError(f"The {card.name} asset card does not describe a model.")
    return config
