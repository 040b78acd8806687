"""LibriSQA (Hugging Face ``ZihanZhao/LibriSQA``) + LibriSpeech audio -> a
spoken-QA instruction file.

Files (the dataset card): ``LibriSQA-PartI/LibriSQA-PartI-{train,test}.json``
and ``LibriSQA-PartII/LibriSQA-PartII-{train,test}.json``; the speech is
LibriSpeech's (train-clean-360 for training, test-clean for testing). Keys
(the dataset card's "Keyword Explanation"):

- Part I (open-ended): ``speech_path``, ``question``, ``answer`` (reference
  answer), ``text`` (transcript), ``duration``. Its examples carry no
  ``options``: their free-form answers are scored by the LLM judge's accuracy
  (``judge.mode=accuracy``; the paper's LibriSQA figure is Part I's).
- Part II (multiple choice): ``speech_path``, ``question_and_option`` (the
  question followed by four options), ``answer`` (the correct option's
  letter, e.g. ``A``), ``answer_and_analysis``.

Each file is a JSON array of such objects (JSON Lines is accepted too). The
card documents ``speech_path`` only as "path to the speech", so the audio is
found by the LibriSpeech utterance id in its file name
(``<speaker>-<chapter>-<utt>``) under ``<librispeech>/<subset>/<speaker>/<chapter>/``;
a ``speech_path`` that exists as given (absolute, or relative to the
LibriSpeech folder) is used directly.

Part II's options are split off ``question_and_option`` at the markers
``A.``/``(A)``/``A)``/``A:``; when that does not give exactly A-D in order the
example keeps the whole text as its question and no ``options`` (counted in
the report), and accuracy falls back to the letter.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from speechmapper_plugin.data.convert.audio_files import require_dir, require_file
from speechmapper_plugin.data.convert.report import ConversionReport, ConvertError
from speechmapper_plugin.data.instructions import (
    QuestionAnswer,
    SpeechRecord,
    build_qa_examples,
    write_instructions,
)
from speechmapper_plugin.data.reasons import MALFORMED_ROW, MISSING_FILE

Part = Literal["auto", "1", "2"]

OPTIONS_UNPARSED = "options_unparsed"
"""Report key: a Part II item whose options could not be split off."""

_UTTERANCE = re.compile(r"(\d+)-(\d+)-(\d+)")
_OPTION = re.compile(r"(?:^|\s|\n)\(?([A-D])[.):]\s+")


def split_options(text: str) -> tuple[str, tuple[str, ...]] | None:
    """``"Q? A. x B. y C. z D. w"`` -> ``("Q?", ("x", "y", "z", "w"))``, or
    ``None`` unless exactly the letters A-D appear, in order."""
    marks = list(_OPTION.finditer(text))
    letters = [m.group(1) for m in marks]
    if letters != ["A", "B", "C", "D"]:
        return None
    question = text[: marks[0].start()].strip()
    options = tuple(
        text[
            m.end() : (marks[i + 1].start() if i + 1 < len(marks) else len(text))
        ].strip()
        for i, m in enumerate(marks)
    )
    if not question or not all(options):
        return None
    return question, options


def load_items(path: Path) -> list[dict[str, Any]]:
    text = require_file(path, "The LibriSQA file").read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as ex:
            raise ConvertError(
                f"{path} is neither a JSON array nor JSON Lines: {ex}"
            ) from None
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        raise ConvertError(f"{path} does not hold a list of LibriSQA items.")
    return [item for item in data if isinstance(item, dict)]


class LibriSpeechIndex:
    """Finds an utterance's FLAC under a LibriSpeech folder by its id."""

    def __init__(self, root: Path) -> None:
        self._root = require_dir(root, "The LibriSpeech folder")
        self._subsets = [d for d in sorted(root.iterdir()) if d.is_dir()]

    def find(self, speech_path: str) -> Path | None:
        given = Path(speech_path)
        for candidate in (given, self._root / given):
            if candidate.is_file():
                return candidate
        match = _UTTERANCE.search(given.name)
        if match is None:
            return None
        speaker, chapter, _ = match.groups()
        name = f"{match.group(0)}.flac"
        for subset in [self._root, *self._subsets]:
            candidate = subset / speaker / chapter / name
            if candidate.is_file():
                return candidate
        return None


def read_librisqa(
    path: Path, librispeech: Path, part: Part, report: ConversionReport
) -> list[tuple[SpeechRecord, QuestionAnswer]]:
    items = load_items(path)
    if not items:
        raise ConvertError(f"{path} holds no item.")
    if part == "auto":
        part = "2" if "question_and_option" in items[0] else "1"
    question_key = "question_and_option" if part == "2" else "question"

    index = LibriSpeechIndex(librispeech)
    out = []
    for n, item in enumerate(items):
        where = f"{path} item {n}"
        speech_path, question, answer = (
            item.get("speech_path"),
            item.get(question_key),
            item.get("answer"),
        )
        if not all(
            isinstance(v, str) and v.strip() for v in (speech_path, question, answer)
        ):
            report.skip(
                MALFORMED_ROW,
                f"{where}: needs string `speech_path`, `{question_key}`, `answer`",
            )
            continue
        assert isinstance(speech_path, str)
        assert isinstance(question, str) and isinstance(answer, str)
        audio = index.find(speech_path)
        if audio is None:
            report.skip(
                MISSING_FILE, f"{where}: {speech_path} not found under {librispeech}"
            )
            continue

        options = None
        if part == "2":
            parsed = split_options(question)
            if parsed is None:
                report.note(OPTIONS_UNPARSED, f"{where}: kept without `options`")
            else:
                question, options = parsed
            answer = answer.strip().strip("().").strip()

        utt_id = audio.name.removesuffix(".flac")
        transcript = item.get("text")
        record = SpeechRecord(
            id=utt_id,
            transcript=transcript if isinstance(transcript, str) else None,
            lang="en",
            audio=str(audio.resolve()),
        )
        out.append(
            (record, QuestionAnswer(question=question, answer=answer, options=options))
        )
    return out


def convert_librisqa(
    path: Path, librispeech: Path, out: Path, *, part: Part = "auto", seed: int = 0
) -> ConversionReport:
    report = ConversionReport(f"librisqa {path.name}")
    items = read_librisqa(path, librispeech, part, report)
    if not items:
        raise ConvertError(
            f"No usable LibriSQA item in {path} (audio under {librispeech})."
        )
    report.num_written = write_instructions(out, build_qa_examples(items, seed=seed))
    report.outputs.append(out)
    return report
