"""Evaluates a trained projector (or adapter): generates on a test set as
``recipes.generate`` does, then scores every task (WER/CER, BLEU/chrF/COMET,
spoken-QA accuracy and judge, language adherence and failure rates) into
``scores.jsonl``, ``summary.json`` and ``summary.md``.

``python -m recipes.evaluate OUT_DIR --config-file recipes/evaluate/configs/tiny.yaml
--config input.manifest=test.tsv prompt.task=asr``

Long recordings: ``long_form.enabled=true`` as in ``recipes.generate``; a
whole-session instruction file (``speechmapper convert europarl_st
--whole-session``) is scored against the segments file beside it
(``sessions.segments``): translations re-segmented onto the reference
segments, transcriptions by WER over the whole recording.

It runs under ``torchrun`` and resumes as ``recipes.generate`` does; rank 0
scores once every rank is done.
"""

from __future__ import annotations

from recipes.common import recipe_main
from recipes.evaluate.recipe import evaluate_recipe


def main() -> None:
    recipe_main(evaluate_recipe(), __doc__ or "")


if __name__ == "__main__":
    main()
