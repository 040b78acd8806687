"""Spoken-SQuAD -> paragraph recordings and a spoken-QA instruction file.

Layout (https://github.com/chiahsuan156/Spoken-SQuAD, README):

- ``spoken_train-v1.1.json`` / ``spoken_test-v1.1.json`` (and the noisy
  ``spoken_test-v1.1_WER44.json``/``_WER54.json``): SQuAD v1.1 JSON
  (``data[].paragraphs[].qas[]`` with ``question``, ``id`` and ``answers[].text``;
  ``context`` is the ASR transcript of the spoken paragraph).
- ``Spoken-SQuAD_audio.zip``: one WAV per *sentence*, named
  ``TopicIndex_ParagraphIndex_SentenceIndex.wav`` after the position in the
  SQuAD JSON (the training set's audio comes from SQuAD train, the test set's
  from SQuAD dev).

A question is about a whole paragraph, so the converter concatenates a
paragraph's sentence files (in sentence order) into
``<out_dir>/audio/<topic>_<paragraph>.wav`` (16-bit PCM, the sentences' own
sample rate; existing files are reused on a rerun). Whether the indices start
at 0 or 1 is not documented; ``index_base="auto"`` picks the base under which
more paragraphs of the JSON have audio and reports it. Every acceptable answer
is kept (``answers``) for SQuAD-style exact match / F1; ``response`` is the
first.
"""

from __future__ import annotations

import io
import json
import os
import re
import wave
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from speechmapper_plugin.atomic_files import atomic_write_bytes
from speechmapper_plugin.audio import AudioError, decode_audio, resample, to_mono
from speechmapper_plugin.data.convert.audio_files import require_dir, require_file
from speechmapper_plugin.data.convert.report import ConversionReport, ConvertError
from speechmapper_plugin.data.instructions import (
    QuestionAnswer,
    SpeechRecord,
    build_qa_examples,
    write_instructions,
)
from speechmapper_plugin.data.reasons import (
    MALFORMED_ROW,
    MISSING_FILE,
    UNDECODABLE_AUDIO,
)

IndexBase = Literal["auto", "0", "1"]

_SENTENCE = re.compile(r"^(\d+)_(\d+)_(\d+)\.wav$")

SentenceIndex = dict[tuple[int, int], list[tuple[int, Path]]]


def index_sentences(audio_dir: Path) -> SentenceIndex:
    """``(topic, paragraph) -> [(sentence, path)]`` sorted by sentence."""
    index: SentenceIndex = defaultdict(list)
    for folder, _, files in os.walk(audio_dir):
        for name in files:
            match = _SENTENCE.match(name)
            if match is not None:
                t, p, s = (int(g) for g in match.groups())
                index[(t, p)].append((s, Path(folder) / name))
    for sentences in index.values():
        sentences.sort()
    return dict(index)


def pick_base(
    paragraphs: list[tuple[int, int]], index: SentenceIndex, base: IndexBase
) -> int:
    if base != "auto":
        return int(base)
    hits = {b: sum((t + b, p + b) in index for t, p in paragraphs) for b in (0, 1)}
    return max(hits, key=lambda b: (hits[b], -b))


def concatenate(sentences: list[Path], out: Path) -> float:
    """Writes the sentences one after another; :returns: seconds written."""
    pieces = [decode_audio(path) for path in sentences]
    rates = {piece.sample_rate for piece in pieces}
    rate = rates.pop() if len(rates) == 1 else 16_000
    waveform = torch.cat(
        [
            resample(to_mono(p.waveform, channel_dim=1), p.sample_rate, rate)
            for p in pieces
        ]
    )
    pcm = np.clip(np.round(waveform.numpy() * 32767), -32768, 32767).astype("<i2")
    out.parent.mkdir(parents=True, exist_ok=True)
    data = io.BytesIO()
    with wave.open(data, "wb") as fp:
        fp.setnchannels(1)
        fp.setsampwidth(2)
        fp.setframerate(rate)
        fp.writeframes(pcm.tobytes())
    atomic_write_bytes(out, data.getbuffer())
    return pcm.size / rate


def convert_spoken_squad(
    json_path: Path,
    audio_dir: Path,
    out_dir: Path,
    *,
    index_base: IndexBase = "auto",
    seed: int = 0,
) -> ConversionReport:
    """Writes ``out_dir/audio/*.wav`` and ``out_dir/<json stem>.jsonl``."""
    report = ConversionReport(f"spoken_squad {json_path.name}")
    data = _load(json_path)
    index = index_sentences(require_dir(audio_dir, "The Spoken-SQuAD audio folder"))
    if not index:
        raise ConvertError(
            f"{audio_dir} holds no <topic>_<paragraph>_<sentence>.wav file; unzip "
            "Spoken-SQuAD_audio.zip and pass the folder of the split (test: SQuAD dev)."
        )

    paragraphs = [
        (t, p)
        for t, article in enumerate(data)
        for p, _ in enumerate(article.get("paragraphs", []))
    ]
    base = pick_base(paragraphs, index, index_base)
    report.notes[f"index_base_{base}"] += len(paragraphs)

    items: list[tuple[SpeechRecord, QuestionAnswer]] = []
    for t, article in enumerate(data):
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            key = (t + base, p + base)
            name = f"{key[0]}_{key[1]}"
            qas = paragraph.get("qas", [])
            if key not in index:
                for _ in qas:
                    report.skip(MISSING_FILE, f"no {name}_*.wav in {audio_dir}")
                continue
            audio = out_dir / "audio" / f"{name}.wav"
            if not audio.is_file():
                try:
                    concatenate([path for _, path in index[key]], audio)
                except (AudioError, OSError) as ex:
                    for _ in qas:
                        report.skip(UNDECODABLE_AUDIO, f"{name}: {ex}")
                    continue
            record = SpeechRecord(id=name, lang="en", audio=str(audio.resolve()))
            for qa in qas:
                answers = _answers(qa)
                question = qa.get("question")
                if not isinstance(question, str) or not question.strip() or not answers:
                    report.skip(MALFORMED_ROW, f"{name}: question {qa.get('id')!r}")
                    continue
                items.append(
                    (
                        record,
                        QuestionAnswer(
                            question=question,
                            answer=answers[0],
                            answers=answers,
                            id=str(qa.get("id", f"{name}:{len(items)}")),
                        ),
                    )
                )

    if not items:
        raise ConvertError(
            f"No usable Spoken-SQuAD question in {json_path} with audio in {audio_dir}."
        )
    out = out_dir / f"{json_path.stem}.jsonl"
    report.num_written = write_instructions(out, build_qa_examples(items, seed=seed))
    report.outputs += [out, out_dir / "audio"]
    return report


def _load(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(
            require_file(path, "The Spoken-SQuAD JSON").read_text(encoding="utf-8")
        )
    except json.JSONDecodeError as ex:
        raise ConvertError(f"{path} is not valid JSON: {ex}") from None
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ConvertError(
            f"{path} is not SQuAD-format JSON (a `data` list of articles)."
        )
    return [a for a in data["data"] if isinstance(a, dict)]


def _answers(qa: dict[str, Any]) -> tuple[str, ...]:
    texts = []
    for answer in qa.get("answers", []):
        text = answer.get("text") if isinstance(answer, dict) else None
        if isinstance(text, str) and text.strip() and text.strip() not in texts:
            texts.append(text.strip())
    return tuple(texts)
