"""``python -m recipes.generate OUT_DIR --config-file recipes/generate/configs/tiny.yaml``

Multi-process (each rank generates its share; rank 0 merges):
``torchrun --nproc-per-node N -m recipes.generate OUT_DIR ...``
"""

from __future__ import annotations

from fairseq2.recipe.cli import main

from recipes.generate.recipe import GenerateRecipe

main(GenerateRecipe())
