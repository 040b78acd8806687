"""``python -m recipes.stage1 OUT_DIR --config-file recipes/stage1/configs/tiny.yaml``"""

from __future__ import annotations

from fairseq2.recipe.cli import main

from recipes.stage1.recipe import Stage1Recipe

main(Stage1Recipe())
