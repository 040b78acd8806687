"""The instruction-data format: one JSON object per line.

Fields:

- ``id`` (str, unique): the example id.
- ``speech`` (str): a feature-store id, **or** ``audio`` (str): an audio path
  (relative paths are resolved against the JSONL file's folder).
- ``instruction`` (str): the user turn; it must contain ``<speech>`` exactly
  once, where the speech embeddings go.
- ``response`` (str): the answer the LLM should give (may be empty for
  inference-only files).
- ``task`` (str, optional): ``asr``, ``st``, ``sqa`` or any label.
- ``lang`` / ``target_lang`` (str, optional): source and target languages.
- ``transcript`` (str, optional): what is said; stage 2 adds the MSE term for
  examples that have one.
- ``response_is_transcript`` (bool, optional): ``true`` says the response *is*
  the transcript (ASR): ``transcript`` is then required, ``response`` may be
  left out (it is the transcript) and must otherwise equal it. Stage 2 then
  writes the CE response as it writes the MSE targets (the one policy,
  ``target_llm.transcript_normalization``), so both terms train on the same
  text; the files stay as the corpus wrote them. ``false`` says the response
  is used as written. An ``asr`` example that says neither is refused by
  stage 2 when that policy changes the text, rather than guessed.
- ``offset`` / ``duration`` (numbers of seconds, optional, with ``audio``
  only): the example's speech is that segment of the audio file (as in a
  manifest's segment rows).
- ``question`` (str, optional): the question alone, for spoken QA (scorers and
  judges need it without the prompt around it).
- ``options`` (list of str, optional): the choices of a multiple-choice
  question, in the order of the letters A, B, C, ...; ``response`` is then the
  correct letter.
- ``answers`` (list of str, optional): every acceptable answer (extractive QA
  scores against the best match); ``response`` is the first.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.data.manifest import ManifestRow
from speechmapper_plugin.llm.speech_prompt import placeholder_problem


class InstructionFormatError(ValueError):
    """A line of an instruction file is not a valid example."""


@dataclass(frozen=True)
class InstructionExample:
    id: str
    instruction: str
    response: str = ""
    speech: str | None = None
    audio: str | None = None
    task: str | None = None
    lang: str | None = None
    target_lang: str | None = None
    transcript: str | None = None
    offset: float | None = None
    duration: float | None = None
    question: str | None = None
    options: tuple[str, ...] | None = None
    answers: tuple[str, ...] | None = None
    response_is_transcript: bool | None = None

    def to_json(self) -> str:
        return json.dumps(
            {k: v for k, v in asdict(self).items() if v is not None}, ensure_ascii=False
        )


_SECONDS_FIELDS: Final = ("offset", "duration")
_LIST_FIELDS: Final = ("options", "answers")
_BOOL_FIELDS: Final = ("response_is_transcript",)


def check_placeholder(instruction: str, where: str = "The instruction") -> None:
    problem = placeholder_problem(instruction, where)
    if problem is not None:
        raise InstructionFormatError(problem)


def parse_example(
    line: str, *, where: str, base_dir: Path | None = None
) -> InstructionExample:
    """Parses and checks one JSONL line; ``where`` names it in errors."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as ex:
        raise InstructionFormatError(f"{where}: not valid JSON ({ex.msg}).") from None
    if not isinstance(data, dict):
        raise InstructionFormatError(f"{where}: expected a JSON object.")

    known = set(InstructionExample.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise InstructionFormatError(
            f"{where}: unknown fields {unknown}; known fields: {sorted(known)}."
        )

    for name in ("id", "instruction"):
        if not isinstance(data.get(name), str) or not data[name].strip():
            raise InstructionFormatError(
                f"{where}: `{name}` must be a non-empty string."
            )
    special = {"id", "instruction", *_SECONDS_FIELDS, *_LIST_FIELDS, *_BOOL_FIELDS}
    for name in known - special:
        if name in data and data[name] is not None and not isinstance(data[name], str):
            raise InstructionFormatError(f"{where}: `{name}` must be a string.")

    for name in _SECONDS_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise InstructionFormatError(
                f"{where}: `{name}` must be a non-negative number of seconds, but is {value!r}."
            )
        if data.get("audio") is None:
            raise InstructionFormatError(
                f"{where}: `{name}` (a segment of an audio file) needs `audio`."
            )
        data[name] = float(value)

    for name in _LIST_FIELDS:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InstructionFormatError(
                f"{where}: `{name}` must be a list of strings."
            )
        data[name] = tuple(value)

    for name in _BOOL_FIELDS:
        value = data.get(name)
        if value is not None and not isinstance(value, bool):
            raise InstructionFormatError(
                f"{where}: `{name}` must be true or false, but is {value!r}."
            )

    if data.get("response_is_transcript"):
        _check_response_is_transcript(data, where)

    if (data.get("speech") is None) == (data.get("audio") is None):
        raise InstructionFormatError(
            f"{where}: give exactly one of `speech` (a feature-store id) and `audio` (a path)."
        )

    check_placeholder(data["instruction"], f"{where}: `instruction`")

    audio = data.get("audio")
    if audio is not None and base_dir is not None and not Path(audio).is_absolute():
        data["audio"] = str(base_dir / audio)

    return InstructionExample(**data)


def _check_response_is_transcript(data: dict[str, Any], where: str) -> None:
    """An example whose response is its transcript has one, and no other
    response; a left-out response is the transcript."""
    transcript = data.get("transcript")
    if not transcript or not transcript.strip():
        raise InstructionFormatError(
            f"{where}: `response_is_transcript` is true but there is no `transcript`; give the transcript (the response is taken from it)."
        )
    response = data.get("response")
    if not response:
        data["response"] = transcript.strip()
    elif response.strip() != transcript.strip():
        raise InstructionFormatError(
            f"{where}: `response_is_transcript` is true but `response` ({response!r}) differs from `transcript` ({transcript!r}); leave `response` out, or set `response_is_transcript` to false if the response is another text."
        )


def read_instructions(path: Path) -> list[InstructionExample]:
    """Reads an instruction file; any bad line or duplicate id is an error that
    names the file and line (a malformed file is unusable as a whole)."""
    if not path.is_file():
        raise FileNotFoundError(f"Instruction file {path} does not exist.")
    examples: list[InstructionExample] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as fp:
        for line_no, line in enumerate(fp, start=1):
            if not line.strip():
                continue
            where = f"{path}:{line_no}"
            example = parse_example(line, where=where, base_dir=path.parent)
            if example.id in seen:
                raise InstructionFormatError(
                    f"{where}: duplicate id '{example.id}' (first on line {seen[example.id]})."
                )
            seen[example.id] = line_no
            examples.append(example)
    if not examples:
        raise InstructionFormatError(f"Instruction file {path} holds no example.")
    return examples


def write_instructions(path: Path, examples: Iterable[InstructionExample]) -> int:
    """Writes ``path`` atomically (a rerun never leaves half a file); returns
    the number of examples."""
    lines = [example.to_json() + "\n" for example in examples]
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "".join(lines))
    return len(lines)


def example_audio_row(
    example: InstructionExample, line_no: int = 0
) -> ManifestRow | None:
    """The audio an example points at, as a manifest row (a segment row when the
    example has ``offset``), so it is decoded like any manifest row; ``None``
    for a feature-store example."""
    if example.audio is None:
        return None

    offset = example.offset
    if offset is None and example.duration is not None:
        offset = 0.0

    return ManifestRow(
        id=example.id,
        audio=Path(example.audio).expanduser().resolve(),
        transcript=example.transcript or "",
        duration=example.duration,
        lang=example.lang,
        line_no=line_no,
        offset=offset,
    )
