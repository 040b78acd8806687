"""Loading the pipeline's three components from asset cards.

The cards' model configurations, the LLM's chat template and its tokenizer
(all cheap) are checked against each other first; model weights (the LLM's
can be tens of gigabytes) are only read once everything fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from fairseq2.assets import AssetCard, AssetCardError, get_asset_store
from fairseq2.data.tokenizers import Tokenizer, load_tokenizer
from fairseq2.device import Device
from fairseq2.models import load_model
from fairseq2.models.transformer_lm import TransformerLM

from speechmapper_plugin.llm import (
    ChatTemplate,
    chat_template_for_card,
    retrieve_llm_card,
)
from speechmapper_plugin.models.adapters import (
    PROJECTOR_CONFIG_CLASSES,
    AnyProjector,
    is_projector,
)
from speechmapper_plugin.models.card_config import model_config_of as model_config_of
from speechmapper_plugin.models.sfm import (
    SFM_CLASSES,
    SFM_CONFIG_CLASSES,
    SfmEncoder,
)
from speechmapper_plugin.speech_llm.compatibility import (
    check_components,
    component_problems,
    resolve_speech_features,
    tokenizer_problems,
)


@dataclass
class LoadedComponents:
    sfm: SfmEncoder
    projector: AnyProjector
    llm: TransformerLM
    tokenizer: Tokenizer
    template: ChatTemplate
    llm_name: str


def load_components(
    sfm: str | None,
    projector: str,
    llm: str,
    *,
    device: Device | str | None = None,
    dtype: torch.dtype = torch.float32,
    sfm_dtype: torch.dtype = torch.float32,
    sfm_layer: int | None = None,
    sfm_layer_norm: bool | None = None,
    allow_feature_mismatch: bool = False,
) -> LoadedComponents:
    """Check, then load, the speech encoder, projector and LLM (+ tokenizer).

    :param sfm: The speech encoder's card; ``None``: the one the projector
        records (``speech_features``).
    :param sfm_layer: Checked (with ``sfm_layer_norm``) against the
        projector's record before anything is loaded.
    :raises IncompatibleComponentsError: before any weights are loaded.
    """
    projector_card = _retrieve(projector, "projector")
    llm_card = retrieve_llm_card(llm)

    try:
        projector_config = model_config_of(projector_card)
    except (AssetCardError, ValueError) as ex:
        raise ValueError(
            f"'{projector}' is not a projector card (family `speechmapper` or `speech_adapter`): {ex}"
        ) from None
    if not isinstance(projector_config, PROJECTOR_CONFIG_CLASSES):
        raise ValueError(
            f"'{projector}' is not a projector card: its model is a {type(projector_config).__name__} (expected family `speechmapper` or `speech_adapter`)."
        )

    record = projector_config.speech_features
    if sfm is None:
        if record is None:
            raise ValueError(
                f"The projector '{projector_card.name}' does not record the speech encoder it was trained on (a projector trained before it did): name the encoder card (`sfm`), and pass `sfm_layer`/`sfm_layer_norm` if it was trained on another layer than the encoder's default."
            )
        sfm = record.encoder
        sfm_card = _retrieve(
            sfm, f"speech encoder '{projector_card.name}' was trained on"
        )
    else:
        sfm_card = _retrieve(sfm, "speech encoder")
        # The encoder card is checked only here; the layers here too, to
        # refuse them before any weights load, and by the pipeline, which
        # logs an allowed mismatch of theirs (and a missing record).
        if record is not None:
            allowed = allow_feature_mismatch
            resolve_speech_features(
                projector_config,
                encoder=sfm,
                layer=None if allowed else sfm_layer,
                layer_norm=None if allowed else sfm_layer_norm,
                allow_mismatch=allowed,
            )

    try:
        sfm_config = model_config_of(sfm_card)
    except (AssetCardError, ValueError) as ex:
        raise ValueError(f"'{sfm}' is not a speech-encoder card: {ex}") from None
    if not isinstance(sfm_config, SFM_CONFIG_CLASSES):
        raise ValueError(
            f"'{sfm}' is not a speech-encoder card: its model is a {type(sfm_config).__name__} (expected family `sm4t_speech_encoder` or `whisper_encoder`)."
        )

    llm_config = model_config_of(llm_card)

    template = chat_template_for_card(llm_card)
    tokenizer = load_tokenizer(llm_card)

    check_components(
        component_problems(
            projector_config,
            llm_name=llm_card.name,
            llm_embed_dim=_int_field(llm_config, "model_dim", llm_card),
            sfm_feature_dim=sfm_config.model_dim,
            projector_name=f"The projector '{projector_card.name}'",
            sfm_name=f"the speech encoder '{sfm_card.name}'",
        )
        + tokenizer_problems(
            tokenizer,
            template,
            llm_name=llm_card.name,
            vocab_size=_int_field(llm_config, "vocab_size", llm_card),
        )
    )

    target = torch.device(device) if isinstance(device, str) else device

    projector_model = load_model(projector_card, device=target, dtype=dtype)
    if not is_projector(projector_model):
        raise ValueError(
            f"The {projector_card.name} asset card loads a {type(projector_model).__name__}, not a projector."
        )
    sfm_model = load_model(sfm_card, device=target, dtype=sfm_dtype)
    if not isinstance(sfm_model, SFM_CLASSES):
        raise ValueError(
            f"The {sfm_card.name} asset card loads a {type(sfm_model).__name__}, not a speech encoder."
        )
    llm_model = load_model(llm_card, device=target, dtype=dtype)
    if not isinstance(llm_model, TransformerLM):
        raise ValueError(
            f"The {llm_card.name} asset card loads a {type(llm_model).__name__}, not a TransformerLM."
        )

    return LoadedComponents(
        sfm=sfm_model,
        projector=projector_model,
        llm=llm_model,
        tokenizer=tokenizer,
        template=template,
        llm_name=llm_card.name,
    )


def _retrieve(name: str, what: str) -> AssetCard:
    card = get_asset_store().maybe_retrieve_card(name)
    if card is None:
        raise ValueError(
            f"No asset card named '{name}' (the {what}). Check the name with `python -m fairseq2.assets list`."
        )

    return card


def _int_field(config: object, name: str, card: AssetCard) -> int:
    value = getattr(config, name, None)
    if not isinstance(value, int):
        raise ValueError(
            f"The model config of the {card.name} asset card ({type(config).__name__}) has no integer `{name}`; is it a decoder-only LLM?"
        )

    return value
