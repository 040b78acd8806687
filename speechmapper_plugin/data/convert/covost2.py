"""CoVoST 2 (on Common Voice 4) -> an audio manifest (ASR) and a
speech-translation instruction file.

Layout (https://github.com/facebookresearch/covost, ``get_covost_splits.py``):

- Common Voice 4 for the source language: ``<cv>/clips/<path>.mp3`` and
  ``<cv>/validated.tsv`` (header row; columns ``client_id``, ``path``,
  ``sentence``, ...).
- CoVoST 2's ``covost_v2.<src>_<tgt>.tsv`` (header row; ``path``,
  ``translation``, ``split`` = train/dev/test, plus ``train_covost``), joined
  with ``validated.tsv`` on ``path`` for the transcript; or the per-split
  output of ``get_covost_splits.py``, ``covost_v2.<src>_<tgt>.<split>.tsv``
  (``path``, ``sentence``, ``translation``, ``client_id``), which needs no
  ``validated.tsv``.

Both TSVs are read as the covost script reads them: tab-separated, no
quoting, ``\\`` as escape character. Clips are MP3, which libsndfile (>= 1.1)
decodes. Language codes such as ``zh-CN`` become ``zh`` in ``target_lang``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

from speechmapper_plugin.data.convert.audio_files import (
    refuse_undecodable,
    require_dir,
    require_file,
)
from speechmapper_plugin.data.convert.report import ConversionReport, ConvertError
from speechmapper_plugin.data.convert.writing import (
    TranslationPair,
    convert_translation_corpus,
)
from speechmapper_plugin.data.instructions import SpeechRecord
from speechmapper_plugin.data.reasons import (
    DUPLICATE_ID,
    EMPTY_TRANSCRIPT,
    MALFORMED_ROW,
    MISSING_FILE,
)

SPLITS = ("train", "dev", "test")

_NAME = re.compile(
    r"^covost_v2\.(?P<src>[A-Za-z-]+)_(?P<tgt>[A-Za-z-]+)(\.(?P<split>\w+))?\.tsv$"
)


def iso_code(code: str) -> str:
    """Common Voice's ``zh-CN``, ``sv-SE`` -> ``zh``, ``sv``."""
    return code.split("-")[0].lower()


def read_covost_tsv(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line, row)`` as pandas reads it in the covost scripts
    (``sep='\\t', quoting=QUOTE_NONE, escapechar='\\\\'``)."""
    with path.open(encoding="utf-8", newline="") as fp:
        reader = csv.reader(fp, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\")
        header = next(reader, None)
        if header is None:
            raise ConvertError(f"{path} is empty.")
        names = [h.strip() for h in header]
        for values in reader:
            if not values:
                continue
            if len(values) != len(names):
                yield reader.line_num, {}
                continue
            yield reader.line_num, dict(zip(names, values, strict=True))


def read_covost2(
    cv_dir: Path, covost_tsv: Path, split: str, report: ConversionReport
) -> tuple[str, str, list[TranslationPair]]:
    """:returns: source and target language codes (ISO), and the pairs."""
    require_file(covost_tsv, "The CoVoST 2 TSV")
    match = _NAME.match(covost_tsv.name)
    if match is None:
        raise ConvertError(
            f"{covost_tsv.name} is not named like a CoVoST 2 file "
            "(covost_v2.<src>_<tgt>.tsv or covost_v2.<src>_<tgt>.<split>.tsv)."
        )
    src, tgt = iso_code(match["src"]), iso_code(match["tgt"])
    if split not in SPLITS:
        raise ConvertError(
            f"CoVoST 2 has the splits {', '.join(SPLITS)}, not '{split}'."
        )
    if match["split"] is not None and match["split"] != split:
        raise ConvertError(
            f"{covost_tsv.name} holds the '{match['split']}' split, not '{split}'."
        )

    clips = require_dir(
        cv_dir / "clips",
        "The Common Voice clips folder",
        "Pass the Common Voice folder of the source language (holding clips/ and validated.tsv).",
    )

    rows = list(read_covost_tsv(covost_tsv))
    has_sentence = bool(rows) and "sentence" in next((r for _, r in rows if r), {})
    sentences: dict[str, str] = {}
    if not has_sentence:
        validated = require_file(
            cv_dir / "validated.tsv",
            "Common Voice's validated.tsv",
            f"{covost_tsv.name} has no `sentence` column, so transcripts come from it.",
        )
        for _, row in read_covost_tsv(validated):
            if row:
                sentences[row["path"]] = row["sentence"]

    pairs = []
    seen: set[str] = set()
    undecodable = []
    for line, row in rows:
        where = f"{covost_tsv}:{line}"
        if not row or "path" not in row or "translation" not in row:
            report.skip(MALFORMED_ROW, f"{where}: wrong number of columns")
            continue
        if match["split"] is None and row.get("split") != split:
            continue  # another split ("train_covost" counts as train only)
        clip = row["path"].strip()
        sentence = row["sentence"] if has_sentence else sentences.get(clip, "")
        if not sentence.strip() or not row["translation"].strip():
            report.skip(
                EMPTY_TRANSCRIPT, f"{where}: no transcript or translation for {clip}"
            )
            continue
        audio = clips / clip
        if not audio.is_file() and (clips / f"{clip}.mp3").is_file():
            audio = clips / f"{clip}.mp3"
        if not audio.is_file():
            report.skip(MISSING_FILE, str(audio))
            continue
        utt_id = Path(clip).stem
        if utt_id in seen:
            report.skip(DUPLICATE_ID, f"{where}: {clip}")
            continue
        seen.add(utt_id)
        undecodable.append(audio)
        record = SpeechRecord(
            id=utt_id, transcript=sentence.strip(), lang=src, audio=str(audio.resolve())
        )
        pairs.append(TranslationPair(record, row["translation"].strip()))

    refuse_undecodable(undecodable, corpus="CoVoST 2")
    return src, tgt, pairs


def convert_covost2(
    cv_dir: Path,
    covost_tsv: Path,
    split: str,
    *,
    manifest: Path | None,
    instructions: Path | None,
    seed: int = 0,
) -> ConversionReport:
    return convert_translation_corpus(
        f"covost2 {covost_tsv.name} {split}",
        lambda report: read_covost2(cv_dir, covost_tsv, split, report),
        nothing=f"No usable CoVoST 2 pair for '{split}' in {covost_tsv}.",
        manifest=manifest,
        instructions=instructions,
        seed=seed,
    )
