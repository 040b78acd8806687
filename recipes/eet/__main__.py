"""``python -m recipes.eet OUT_DIR --config-file recipes/eet/configs/llama3_1_8b.yaml``

Writes ``OUT_DIR/eet.json``, ``OUT_DIR/eet.md`` (also printed) and ``OUT_DIR/eet.png``.
"""

from __future__ import annotations

from fairseq2.recipe.cli import main

from recipes.eet.recipe import EETRecipe

main(EETRecipe())
