"""Do the speech encoder, the projector and the LLM belong together?

A projector maps one encoder's features into one LLM's embedding space; any
other combination runs without crashing and generates nonsense, or crashes
deep inside a model. These checks need only configurations, names and the
tokenizer, so callers run them before loading (or running) anything heavy.
"""

from __future__ import annotations

from collections.abc import Sequence

from fairseq2.data.tokenizers import Tokenizer

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
