"""The model widths a cell needs, read from the cards (no weights loaded):
the SFM's feature width is the projector's ``input_dim``, the LLM's embedding
width its ``output_dim``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from fairseq2.assets import AssetCardError, get_asset_store

from recipes.grid.config import GridConfig
from recipes.grid.plan import Widths
from speechmapper_plugin.llm import TargetLLMCardError, read_llm_embed_dim
from speechmapper_plugin.models.card_config import model_config_of


def start_fairseq2(asset_paths: Sequence[Path]) -> None:
    """Start the fairseq2 runtime with the grid's extra card directories."""
    from fairseq2 import init_fairseq2
    from fairseq2.composition import register_file_assets
    from fairseq2.runtime.dependency import DependencyContainer

    def register(container: DependencyContainer) -> None:
        for path in asset_paths:
            register_file_assets(container, path.expanduser().resolve())

    init_fairseq2(extras=register)


def read_widths(config: GridConfig) -> Widths:
    """:raises ValueError: naming a card that is unknown or has no width."""
    store = get_asset_store()

    sfm: dict[str, int] = {}
    for entry in config.sfms:
        card = store.maybe_retrieve_card(entry.card)
        if card is None:
            raise ValueError(
                f"`sfms`: no asset card named '{entry.card}' (add its directory to `asset_paths`)."
            )
        try:
            width = getattr(model_config_of(card), "model_dim", None)
        except (AssetCardError, ValueError) as ex:
            raise ValueError(f"`sfms`: the card '{entry.card}': {ex}") from None
        if not isinstance(width, int):
            raise ValueError(
                f"`sfms`: the card '{entry.card}' is not a speech encoder (its config has no `model_dim`)."
            )
        sfm[entry.card] = width

    llm: dict[str, int] = {}
    for llm_entry in config.llms:
        try:
            llm[llm_entry.card] = read_llm_embed_dim(llm_entry.card)
        except TargetLLMCardError as ex:
            raise ValueError(f"`llms`: {ex}") from None

    return Widths(sfm=sfm, llm=llm)
