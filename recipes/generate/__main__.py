"""Generates text from speech: a speech encoder, a trained projector (or
adapter) and the frozen LLM over an audio manifest or an instruction file.
Writes ``hypotheses.jsonl``, ``skipped.tsv`` and ``summary.json`` (counts,
stop reasons, WER/BLEU where there are references).

``python -m recipes.generate OUT_DIR --config-file recipes/generate/configs/tiny.yaml
--config input.manifest=test.tsv prompt.task=asr``

Recordings longer than the projector takes (skipped as ``too_long_audio``
by default): ``long_form.enabled=true long_form.segmenter.kind=vad`` (or
``fixed``) cuts them into segments, decodes them in batches and joins them;
their records carry ``segments`` (``start``, ``end``, ``text``).

Multi-process (each rank generates its share; rank 0 merges):
``torchrun --nproc-per-node N -m recipes.generate OUT_DIR ...``. Rerunning
into the same ``OUT_DIR`` after an interruption generates only what is missing.
"""

from __future__ import annotations

from recipes.common import recipe_main
from recipes.generation import GenerationRecipe


def main() -> None:
    recipe_main(GenerationRecipe(), __doc__ or "")


if __name__ == "__main__":
    main()
