"""``python -m recipes.extract_features OUT_DIR --config-file recipes/extract_features/configs/tiny.yaml``

Multi-process (each rank extracts its own shards; rank 0 merges the index):
``torchrun --nproc-per-node N -m recipes.extract_features OUT_DIR ...``
"""

from __future__ import annotations

from fairseq2.recipe.cli import main

from recipes.extract_features.recipe import ExtractFeaturesRecipe

main(ExtractFeaturesRecipe())
