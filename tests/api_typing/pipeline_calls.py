"""Calls users write, checked by mypy (``make typecheck``), never run: the
pipeline's public signatures must accept them as they are typed in users'
code (a ``list[Path]`` is not a ``list[str | PathLike[str] | ...]``: a list
is invariant)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from speechmapper_plugin.speech_llm import (
    PipelineResult,
    SkippedInput,
    SpeechMapperPipeline,
)


def calls(
    pipe: SpeechMapperPipeline,
    paths: list[Path],
    arrays: list[np.ndarray],
    mixed: list[str | Path],
    tensors: tuple[Tensor, ...],
) -> None:
    one: str = pipe.transcribe(paths[0])
    many: list[str] = pipe.transcribe(paths)
    french: list[str] = pipe.translate(arrays, "fr")
    answers: list[str] = pipe.answer(mixed, "Who speaks?")
    texts: list[str] = pipe.generate(tensors, "Say it.\n<speech>")
    results: list[PipelineResult] = pipe.run(paths, "Say it.\n<speech>")
    skipping: list[PipelineResult | SkippedInput] = pipe.run(
        paths, "Say it.\n<speech>", on_error="skip"
    )
    print(one, many, french, answers, texts, results, skipping)
