"""Extracts a speech encoder's features of an audio manifest into a sharded,
resumable feature store (what stages 1 and 2 train on).

``python -m recipes.extract_features OUT_DIR --config-file
recipes/extract_features/configs/tiny.yaml --config
dataset.config_overrides.manifests.train=train.tsv``

Multi-process (each rank extracts its own shards; rank 0 merges the index):
``torchrun --nproc-per-node N -m recipes.extract_features OUT_DIR ...``
"""

from __future__ import annotations

from recipes.common import recipe_main
from recipes.extract_features.recipe import ExtractFeaturesRecipe


def main() -> None:
    recipe_main(ExtractFeaturesRecipe(), __doc__ or "")


if __name__ == "__main__":
    main()
