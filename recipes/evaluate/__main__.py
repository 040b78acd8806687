"""``python -m recipes.evaluate OUT_DIR --config-file recipes/evaluate/configs/tiny.yaml``

Multi-process (each rank generates its share; rank 0 merges and scores):
``torchrun --nproc-per-node N -m recipes.evaluate OUT_DIR ...``. Rerunning
into the same ``OUT_DIR`` after an interruption generates only what is missing.
"""

from __future__ import annotations

from fairseq2.recipe.cli import main

from recipes.evaluate.recipe import EvaluateRecipe

main(EvaluateRecipe())
