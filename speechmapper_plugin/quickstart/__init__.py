"""The offline quickstart: ``python -m speechmapper_plugin.quickstart [OUT_DIR]``.

Builds everything a SpeechMapper run needs without downloading anything (a
tiny SeamlessM4T-v2 speech encoder, a tiny Llama-3-style LLM with the real
special tokens and chat template, a synthesised speech corpus, asset cards),
then runs the real command-line tools and recipes on it, as a full-scale user
would: manifest validation, feature extraction, stage 1, stage 2, generation.
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
