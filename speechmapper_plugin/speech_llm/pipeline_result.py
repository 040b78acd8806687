"""What the pipeline returns for one input: the answer with how it came about,
or (with ``on_error="skip"``) why the input was skipped."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from speechmapper_plugin.generation import GenerationResult, StopReason
from speechmapper_plugin.llm import SpeechPrompt
from speechmapper_plugin.speech_llm.audio_inputs import AudioInputError

OnError: TypeAlias = Literal["raise", "skip"]
"""What a batch call does with an unusable input: raise its
:class:`AudioInputError` before any model runs (the default), or put a
:class:`SkippedInput` in its place and answer the others."""


@dataclass(frozen=True)
class PipelineResult:
    """The answer to one (audio, instruction) pair, with how it came about."""

    text: str
    """The decoded best hypothesis, special tokens dropped, stripped."""

    instruction: str
    """The user content the prompt was built from (with ``<speech>``)."""

    prompt: SpeechPrompt
    """The token ids before and after the speech embeddings, and the rendered prompt."""

    num_speech_positions: int
    """The number of speech embeddings the projector produced for the audio."""

    generation: GenerationResult
    """The full search result (n-best list for beam search, token log-probs)."""

    @property
    def error(self) -> None:
        """Never set: an input that fails raises or becomes a :class:`SkippedInput`."""
        return None

    @property
    def token_ids(self) -> list[int]:
        """The generated ids of the best hypothesis, without the stop token."""
        return list(self.generation.best.tokens)

    @property
    def stop_reason(self) -> StopReason:
        return self.generation.stop_reason

    @property
    def repetition_stopped(self) -> bool:
        """The repetition guard ended the answer: the LLM was looping."""
        return self.stop_reason == "repetition"

    @property
    def max_length_reached(self) -> bool:
        """The answer ran into its token budget without an end-of-turn token."""
        return self.stop_reason == "max_length"

    @property
    def prompt_len(self) -> int:
        """Positions the LLM read before generating (text + speech)."""
        return self.generation.prompt_len


@dataclass(frozen=True)
class SkippedInput:
    """An input left out by ``on_error="skip"``, in its result's place."""

    error: AudioInputError
    """What is wrong: ``error.code`` is the reason code of
    :mod:`speechmapper_plugin.data.reasons` (``too_short_audio``,
    ``invalid_audio``, ...), ``str(error)`` the message naming the input."""

    @property
    def text(self) -> None:
        """No answer: the models never saw this input."""
        return None
