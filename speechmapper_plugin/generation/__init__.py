"""Generation from speech embeddings: greedy, beam search and sampling over fairseq2's KV cache."""

from __future__ import annotations

from speechmapper_plugin.generation.config import (
    RENAMED_FIELDS as RENAMED_FIELDS,
)
from speechmapper_plugin.generation.config import (
    GenerationConfig as GenerationConfig,
)
from speechmapper_plugin.generation.config import (
    RepetitionGuardConfig as RepetitionGuardConfig,
)
from speechmapper_plugin.generation.config import (
    SamplerSection as SamplerSection,
)
from speechmapper_plugin.generation.decoder import GenerationError as GenerationError
from speechmapper_plugin.generation.generate import (
    generate_from_embeddings as generate_from_embeddings,
)
from speechmapper_plugin.generation.hypothesis import (
    SEARCH_STOP_REASONS as SEARCH_STOP_REASONS,
)
from speechmapper_plugin.generation.hypothesis import (
    GenerationResult as GenerationResult,
)
from speechmapper_plugin.generation.hypothesis import (
    RepetitionLoop as RepetitionLoop,
)
from speechmapper_plugin.generation.hypothesis import StopReason as StopReason
from speechmapper_plugin.generation.hypothesis import (
    stop_reason_counts as stop_reason_counts,
)
from speechmapper_plugin.generation.inputs import (
    PromptTooLongError as PromptTooLongError,
)
from speechmapper_plugin.generation.inputs import token_budgets as token_budgets
from speechmapper_plugin.generation.repetition import (
    find_repetition_loop as find_repetition_loop,
)
from speechmapper_plugin.generation.single import CancelCheck as CancelCheck
from speechmapper_plugin.generation.single import DecodingStep as DecodingStep
from speechmapper_plugin.generation.single import StepCallback as StepCallback
