"""Calibrates stage 1 for a target LLM: measures its Embedding Error Threshold
(EET), the MSE of noise on its input embeddings it tolerates before its
output changes, on a set of sentences.

``python -m recipes.eet OUT_DIR --config-file recipes/eet/configs/llama3_1_8b.yaml
--config input.text_file=sentences.txt`` writes ``OUT_DIR/eet.json``,
``OUT_DIR/eet.md`` (also printed) and ``OUT_DIR/eet.png``.
"""

from __future__ import annotations

from recipes.common import recipe_main
from recipes.eet.recipe import EETRecipe


def main() -> None:
    recipe_main(EETRecipe(), __doc__ or "")


if __name__ == "__main__":
    main()
