"""What the pipeline returns for one input, beyond the text."""

from __future__ import annotations

from dataclasses import dataclass

from speechmapper_plugin.generation import GenerationResult, StopReason
from speechmapper_plugin.llm import SpeechPrompt


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
