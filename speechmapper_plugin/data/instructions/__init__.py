"""Instruction data for stage 2 and inference: format, prompt pools, builders."""

from __future__ import annotations

from speechmapper_plugin.data.instructions.builders import (
    QuestionAnswer as QuestionAnswer,
)
from speechmapper_plugin.data.instructions.builders import SpeechRecord as SpeechRecord
from speechmapper_plugin.data.instructions.builders import (
    build_asr_examples as build_asr_examples,
)
from speechmapper_plugin.data.instructions.builders import (
    build_qa_examples as build_qa_examples,
)
from speechmapper_plugin.data.instructions.builders import (
    build_sqa_examples as build_sqa_examples,
)
from speechmapper_plugin.data.instructions.builders import (
    build_st_examples as build_st_examples,
)
from speechmapper_plugin.data.instructions.example import (
    InstructionExample as InstructionExample,
)
from speechmapper_plugin.data.instructions.example import (
    InstructionFormatError as InstructionFormatError,
)
from speechmapper_plugin.data.instructions.example import (
    check_placeholder as check_placeholder,
)
from speechmapper_plugin.data.instructions.example import (
    example_audio_row as example_audio_row,
)
from speechmapper_plugin.data.instructions.example import (
    read_instructions as read_instructions,
)
from speechmapper_plugin.data.instructions.example import (
    write_instructions as write_instructions,
)
from speechmapper_plugin.data.instructions.prompts import (
    ASR_EVAL_PROMPTS as ASR_EVAL_PROMPTS,
)
from speechmapper_plugin.data.instructions.prompts import (
    ASR_TRAIN_PROMPTS as ASR_TRAIN_PROMPTS,
)
from speechmapper_plugin.data.instructions.prompts import (
    SPEECH_PLACEHOLDER as SPEECH_PLACEHOLDER,
)
from speechmapper_plugin.data.instructions.prompts import language_name as language_name
