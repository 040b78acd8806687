"""``python -m recipes.stage2 OUT_DIR --config-file recipes/stage2/configs/tiny.yaml``"""

from __future__ import annotations

from fairseq2.recipe.cli import main

from recipes.stage2.recipe import Stage2Recipe

main(Stage2Recipe())
