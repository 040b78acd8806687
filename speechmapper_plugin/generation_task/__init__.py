"""Generation over a dataset, sharded over ranks and resumable: the examples
of a manifest or instruction file, fairseq2's generator unit and reader over
them, each rank's part files, and the merged ``hypotheses.jsonl``,
``skipped.tsv`` and ``summary.json`` (the recipes ``generate`` and
``evaluate``)."""

from __future__ import annotations

from speechmapper_plugin.generation_task.inputs import (
    GenerateInputs as GenerateInputs,
)
from speechmapper_plugin.generation_task.inputs import read_inputs as read_inputs
from speechmapper_plugin.generation_task.options import (
    InstructionPromptSection as InstructionPromptSection,
)
from speechmapper_plugin.generation_task.unit import SETTINGS_FILE as SETTINGS_FILE
from speechmapper_plugin.generation_task.unit import GenerateReader as GenerateReader
from speechmapper_plugin.generation_task.unit import GenerateUnit as GenerateUnit
from speechmapper_plugin.generation_task.unit import RunScorer as RunScorer
from speechmapper_plugin.generation_task.unit import (
    examples_to_generate as examples_to_generate,
)
