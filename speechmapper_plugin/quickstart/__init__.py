"""The offline quickstart: ``python -m speechmapper_plugin.quickstart [OUT_DIR]``.

SpeechMapper's claim in miniature, offline: a toy world (English with French
and German translations), a tiny Llama trained on its text to repeat and
translate, espeak-ng speech with held-out voices, then the real tools and
recipes (manifest validation, feature extraction, stage 1, ASR-only stage 2 at
σ = 0.9 and σ = 0, evaluation): does a projector trained on transcription only
let the LLM translate speech?
"""

from __future__ import annotations

from speechmapper_plugin.quickstart.layout import QuickstartError as QuickstartError
from speechmapper_plugin.quickstart.options import DEFAULT_SIZE as DEFAULT_SIZE
from speechmapper_plugin.quickstart.options import SMALL_SIZE as SMALL_SIZE
from speechmapper_plugin.quickstart.options import (
    QuickstartOptions as QuickstartOptions,
)
from speechmapper_plugin.quickstart.options import QuickstartSize as QuickstartSize
from speechmapper_plugin.quickstart.run import main as main
from speechmapper_plugin.quickstart.run import run_quickstart as run_quickstart
