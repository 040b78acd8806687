"""The examples to generate for, from an audio manifest or an instruction file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from speechmapper_plugin.data.instructions import example_audio_row, read_instructions
from speechmapper_plugin.data.manifest import BadRow, ManifestRow
from speechmapper_plugin.datasets.audio_manifest import AudioManifestDataset
from speechmapper_plugin.generation_task.options import InstructionPromptSection
from speechmapper_plugin.speech_llm import TaskPrompts

BYTES_PER_SECOND_GUESS = 32_000
"""16-bit mono 16 kHz: sorts examples whose length is not declared by file size."""


@dataclass(frozen=True)
class GenerateItem:
    """One example: where its speech is, what to ask, and what to compare with."""

    id: str
    line_no: int
    instruction: str
    task: str | None
    reference: str | None
    """The expected answer, if known: the transcript (manifest, ``asr``) or
    the ``response`` (instruction file)."""

    lang: str | None = None
    target_lang: str | None = None

    audio: ManifestRow | None = None
    """The audio to decode (``None`` for feature-store examples)."""

    speech: str | None = None
    """The feature-store id (``None`` for audio examples)."""

    transcript: str | None = None
    """What is said, where known: the source text of a translation (COMET)."""

    question: str | None = None
    """Spoken QA: the question alone (for a judge)."""

    options: tuple[str, ...] | None = None
    """Spoken QA: multiple-choice options, lettered A, B, ... in order."""

    answers: tuple[str, ...] | None = None
    """Spoken QA: every acceptable answer."""

    def length_hint(self) -> float:
        """Seconds, roughly; only used to batch similar lengths together."""
        row = self.audio
        if row is None:
            return 0.0
        if row.duration is not None:
            return row.duration
        if row.num_samples is not None:
            return row.num_samples / 16_000
        try:
            return row.audio.stat().st_size / BYTES_PER_SECOND_GUESS
        except OSError:
            return 0.0  # reported as a bad row when it is read


@dataclass
class GenerateInputs:
    source: Path
    items: list[GenerateItem]
    bad_rows: list[BadRow] = field(default_factory=list)
    """Rows set aside before generation (malformed, duplicate ids)."""

    @property
    def num_inputs(self) -> int:
        return len(self.items) + len(self.bad_rows)


def read_inputs(
    *,
    manifest: Path | None,
    root: Path | None,
    instructions: Path | None,
    prompt: InstructionPromptSection,
) -> GenerateInputs:
    """The examples of an audio manifest (relative audio paths resolved
    against ``root``) or of an instruction file.

    :raises ValueError: if the manifest or instruction file is unusable.
    """
    if manifest is not None:
        return _from_manifest(manifest, root, prompt)

    if instructions is not None:
        return _from_instructions(instructions)

    raise ValueError("`input.manifest` or `input.instructions` must be given.")


def manifest_instruction(prompt: InstructionPromptSection, prompts: TaskPrompts) -> str:
    """The user turn every manifest row gets."""
    if prompt.instruction is not None:
        return prompt.instruction

    if prompt.task == "st":
        if not prompt.target_lang:
            raise ValueError("`prompt.task: st` needs `prompt.target_lang`.")
        return prompts.translation(prompt.target_lang)

    return prompts.transcription()


def _from_manifest(
    path: Path, root: Path | None, prompt: InstructionPromptSection
) -> GenerateInputs:
    split = AudioManifestDataset({"input": path}, root=root).read_split("input")

    instruction = manifest_instruction(prompt, TaskPrompts())

    items = [
        GenerateItem(
            id=row.id,
            line_no=row.line_no,
            instruction=instruction,
            task=prompt.task,
            reference=(row.transcript or None) if prompt.task == "asr" else None,
            lang=row.lang,
            target_lang=prompt.target_lang if prompt.task == "st" else None,
            audio=row,
            transcript=row.transcript or None,
        )
        for row in split.rows
    ]

    return GenerateInputs(path, items, split.bad_rows)


def _from_instructions(path: Path) -> GenerateInputs:
    examples = read_instructions(path)

    # `read_instructions` skips blank lines; example k is the k-th non-blank line.
    with path.open(encoding="utf-8") as fp:
        line_nos = [n for n, line in enumerate(fp, start=1) if line.strip()]

    items = [
        GenerateItem(
            id=example.id,
            line_no=line_no,
            instruction=example.instruction,
            task=example.task,
            reference=example.response or None,
            lang=example.lang,
            target_lang=example.target_lang,
            audio=example_audio_row(example, line_no),
            speech=example.speech,
            transcript=example.transcript or None,
            question=example.question,
            options=example.options,
            answers=example.answers,
        )
        for example, line_no in zip(examples, line_nos, strict=True)
    ]

    return GenerateInputs(path, items)
