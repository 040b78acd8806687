"""Stage 1, LLM-free pretraining: trains the projector (or an adapter) to map
cached speech-encoder features onto the target LLM's token embeddings of the
transcript (MSE), without running the LLM.

``python -m recipes.stage1 OUT_DIR --config-file recipes/stage1/configs/tiny.yaml``
"""

from __future__ import annotations

from recipes.common import recipe_main
from recipes.stage1.recipe import Stage1Recipe


def main() -> None:
    recipe_main(Stage1Recipe(), __doc__ or "")


if __name__ == "__main__":
    main()
