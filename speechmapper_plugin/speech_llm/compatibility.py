"""Do the speech encoder, the projector and the LLM belong together?

A projector maps one encoder's features into one LLM's embedding space; any
other combination runs without crashing and generates nonsense, or crashes
deep inside a model. These checks need only configurations, names and the
tokenizer, so callers run them before loading (or running) anything heavy.
"""

from __future__ import annotations

from collections.abc import Sequence

from fairseq2.data.tokenizers import Tokenizer
from fairseq2.logging import log

from speechmapper_plugin.llm import (
    SPEECH_PLACEHOLDER,
    ChatTemplate,
    UnknownTokenError,
    encode_speech_prompt,
    max_token_id,
    stop_token_ids,
)
from speechmapper_plugin.models.adapters import ProjectorConfig
from speechmapper_plugin.models.projector_base import (
    SpeechFeaturesConfig,
)
from speechmapper_plugin.models.projector_base import (
    base_card_name as base_card_name,
)


class IncompatibleComponentsError(ValueError):
    """The speech encoder, projector, LLM and tokenizer do not fit together."""

    def __init__(self, problems: Sequence[str]) -> None:
        listed = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"The speech encoder, projector and LLM do not fit together:\n{listed}"
        )
        self.problems = list(problems)


def component_problems(
    projector: ProjectorConfig,
    *,
    llm_name: str,
    llm_embed_dim: int,
    sfm_feature_dim: int,
    projector_name: str = "the projector",
    sfm_name: str = "the speech encoder",
) -> list[str]:
    """Every mismatch between the projector (or adapter) and its neighbours
    (empty if none)."""
    problems = []

    target = projector.target_llm
    if target is not None and base_card_name(target) != base_card_name(llm_name):
        problems.append(
            f"{projector_name} was trained for the LLM '{target}' (its `target_llm`), but the LLM is '{llm_name}'. A projector only speaks the embedding space it was trained for: use a projector trained for '{llm_name}'. If both names are the same model, override the projector's `target_llm` (in recipes: `--config model.config_overrides.target_llm={llm_name}`)."
        )

    if projector.output_dim != llm_embed_dim:
        problems.append(
            f"{projector_name} outputs {projector.output_dim}-d embeddings, but '{llm_name}' has {llm_embed_dim}-d token embeddings: the projector was not trained for this LLM."
        )

    if projector.input_dim != sfm_feature_dim:
        problems.append(
            f"{projector_name} takes {projector.input_dim}-d speech features, but {sfm_name} produces {sfm_feature_dim}-d features: use the speech encoder the projector was trained on."
        )

    return problems


def resolve_speech_features(
    projector: ProjectorConfig,
    *,
    encoder: str | None = None,
    layer: int | None = None,
    layer_norm: bool | None = None,
    allow_mismatch: bool = False,
    override: str = "allow_feature_mismatch=True",
    layer_option: str = "sfm_layer",
) -> tuple[str | None, int | None, bool | None]:
    """The speech-encoder card, layer and LayerNorm to extract: each one given,
    else the one the projector was trained on (its ``speech_features``).

    A projector fed another encoder's or another layer's features runs and
    generates nonsense, so a given value that differs from the record is
    refused unless ``allow_mismatch`` (then only logged). A projector without
    a record (trained before configs had one) gets what is given, ``None``
    meaning the encoder's default layer, with a warning.

    :param override: How the caller's user allows a mismatch, for the message.
    :param layer_option: How the caller's user sets the layer, for the message.
    :raises IncompatibleComponentsError: on a refused mismatch.
    """
    record = projector.speech_features
    if record is None:
        if layer is None:
            log.warning(
                "The projector does not record the speech-encoder layer it was trained on (a projector trained before it did): extracting the encoder's default layer. If it was trained on another layer, set `{}` (and its LayerNorm choice); a projector fed another layer's features generates nonsense.",
                layer_option,
            )
        return encoder, layer, layer_norm

    wanted = SpeechFeaturesConfig(
        encoder=record.encoder if encoder is None else encoder,
        layer=record.layer if layer is None else layer,
        layer_norm=record.layer_norm if layer_norm is None else layer_norm,
    )
    differences = record.differences(wanted)
    if differences:
        problem = f"The projector was trained on the features of {record.describe()}, but this run asks for {', '.join(differences)}: a projector fed other features runs and generates nonsense. Leave them unset to use the projector's, or pass `{override}` to run anyway."
        if not allow_mismatch:
            raise IncompatibleComponentsError([problem])
        log.warning("{} (allowed by `{}`)", problem, override)

    return wanted.encoder, wanted.layer, wanted.layer_norm


def tokenizer_problems(
    tokenizer: Tokenizer, template: ChatTemplate, *, llm_name: str, vocab_size: int
) -> list[str]:
    """Mismatches between the LLM's tokenizer, its chat template and its vocabulary."""
    problems = []

    try:
        encode_speech_prompt(tokenizer, template, SPEECH_PLACEHOLDER)
        stop_token_ids(tokenizer, template)
    except (ValueError, UnknownTokenError) as ex:
        problems.append(f"The tokenizer of '{llm_name}': {ex}")

    largest = max_token_id(tokenizer)
    if largest >= vocab_size:
        problems.append(
            f"The tokenizer of '{llm_name}' can produce token id {largest}, but the LLM has only {vocab_size} tokens: the tokenizer and the model do not belong together."
        )

    return problems


def check_components(problems: Sequence[str]) -> None:
    """Raise :class:`IncompatibleComponentsError` listing ``problems``, if any."""
    if problems:
        raise IncompatibleComponentsError(problems)
