"""Stage 2, instruction tuning: trains the projector through the frozen LLM on
instruction data, with (1-σ)·CE of the LLM's answer + σ·the stage-1 MSE.

``python -m recipes.stage2 OUT_DIR --config-file recipes/stage2/configs/tiny.yaml``
"""

from __future__ import annotations

from recipes.common import recipe_main
from recipes.stage2.recipe import Stage2Recipe


def main() -> None:
    recipe_main(Stage2Recipe(), __doc__ or "")


if __name__ == "__main__":
    main()
