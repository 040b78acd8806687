"""The projector attached to a frozen LLM: prompt assembly and inference (the
stage-2 objective lives in :mod:`speechmapper_plugin.losses`)."""

from __future__ import annotations

from speechmapper_plugin.speech_llm.audio_inputs import AudioInput as AudioInput
from speechmapper_plugin.speech_llm.audio_inputs import (
    AudioInputError as AudioInputError,
)
from speechmapper_plugin.speech_llm.audio_inputs import (
    SpeechTooLongError as SpeechTooLongError,
)
from speechmapper_plugin.speech_llm.audio_inputs import (
    SpeechTooShortError as SpeechTooShortError,
)
from speechmapper_plugin.speech_llm.audio_inputs import (
    UnusableSpeechError as UnusableSpeechError,
)
from speechmapper_plugin.speech_llm.compatibility import (
    IncompatibleComponentsError as IncompatibleComponentsError,
)
from speechmapper_plugin.speech_llm.compatibility import (
    component_problems as component_problems,
)
from speechmapper_plugin.speech_llm.compatibility import (
    tokenizer_problems as tokenizer_problems,
)
from speechmapper_plugin.speech_llm.long_form import (
    LongFormResult as LongFormResult,
)
from speechmapper_plugin.speech_llm.long_form import TimedSegment as TimedSegment
from speechmapper_plugin.speech_llm.long_form import run_long_form as run_long_form
from speechmapper_plugin.speech_llm.pipeline import (
    SpeechMapperPipeline as SpeechMapperPipeline,
)
from speechmapper_plugin.speech_llm.pipeline_cards import (
    model_config_of as model_config_of,
)
from speechmapper_plugin.speech_llm.pipeline_result import OnError as OnError
from speechmapper_plugin.speech_llm.pipeline_result import (
    PipelineResult as PipelineResult,
)
from speechmapper_plugin.speech_llm.pipeline_result import (
    SkippedInput as SkippedInput,
)
from speechmapper_plugin.speech_llm.task_prompts import TaskPrompts as TaskPrompts
from speechmapper_plugin.speech_llm.text_stream import AnswerStream as AnswerStream
from speechmapper_plugin.speech_llm.text_stream import TextDeltas as TextDeltas
