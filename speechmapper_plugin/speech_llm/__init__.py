"""The projector attached to a frozen LLM: prompt assembly, losses, inference."""

from __future__ import annotations

from speechmapper_plugin.speech_llm.assemble import AssembledInputs as AssembledInputs
from speechmapper_plugin.speech_llm.assemble import assemble_inputs as assemble_inputs
