"""``python -m speechmapper_plugin.evaluation.sessions HYPOTHESES SEGMENTS --out DIR``:
long-form scores of a finished run on whole recordings.

Each line of ``hypotheses.jsonl`` (from ``recipes.evaluate`` or
``recipes.generate`` on a whole-session instruction file) gets its
session's reference segments from the segments file the converter wrote
beside the instruction file (EuroParl-ST ``--whole-session``): a
translation's hypothesis is cut onto the segment translations by minimum
edit distance and scored with BLEU, chrF and COMET (sources: the segment
transcripts); a transcription is scored by WER over the whole recording
(:mod:`~speechmapper_plugin.evaluation.scoring`). Writes ``summary.json``
(``metrics``, ``versions``) and ``scores.jsonl`` (one row per session, with
its pieces) into ``DIR``, and COMET's inputs into ``DIR/comet/<lang>/``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from speechmapper_plugin.atomic_files import atomic_write_text
from speechmapper_plugin.data.convert.europarl_st import read_segments
from speechmapper_plugin.data.convert.report import ConvertError
from speechmapper_plugin.evaluation.options import ScoringSection
from speechmapper_plugin.evaluation.scoring import score_records
from speechmapper_plugin.evaluation.versions import metric_versions


def attach_segments(
    records: Sequence[Mapping[str, Any]], sessions: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The records with their session's segments as ``reference`` (the
    translations for ``st``, the transcripts otherwise) and, for ``st``,
    the segment transcripts as ``transcript`` (COMET's sources). A record's
    session is the one of its audio file (the instruction example's id
    differs from the speech's), else of its id.

    :raises ValueError: if a record has no session in ``sessions``.
    """
    by_key: dict[str, Mapping[str, Any]] = {}
    for session in sessions:
        by_key[str(session["id"])] = session
        by_key[str(Path(session["audio"]))] = session

    def session_of(record: Mapping[str, Any]) -> Mapping[str, Any] | None:
        audio = record.get("audio")
        found = by_key.get(str(Path(audio))) if audio else None
        return found or by_key.get(str(record.get("id")))

    missing = [str(r.get("id")) for r in records if session_of(r) is None]
    if missing:
        raise ValueError(
            f"{len(missing)} of {len(records)} records have no session in the segments file "
            f"(first: {missing[:3]}); give the segments file written with the instruction file the run read."
        )
    out = []
    for record in records:
        found = session_of(record)
        assert found is not None
        segments = found["segments"]
        transcripts = [str(s["transcript"]) for s in segments]
        updated = dict(record)
        if record.get("task") == "st":
            updated["reference"] = [str(s["translation"]) for s in segments]
            updated["transcript"] = transcripts
        else:
            updated["reference"] = transcripts
        out.append(updated)
    return out


def score_sessions(
    hypotheses: Path, segments: Path, out: Path, scoring: ScoringSection | None = None
) -> dict[str, Any]:
    """Scores a run's whole-session hypotheses; writes and returns the summary."""
    records = [
        json.loads(line)
        for line in hypotheses.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    if not records:
        raise ValueError(f"{hypotheses} holds no record to score.")
    attached = attach_segments(records, read_segments(segments))
    out.mkdir(parents=True, exist_ok=True)
    metrics, rows = score_records(
        attached, scoring or ScoringSection(), comet_dir=out / "comet"
    )
    summary = {"metrics": metrics, "versions": metric_versions()}
    atomic_write_text(
        out / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
    )
    atomic_write_text(
        out / "scores.jsonl",
        "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows),
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speechmapper_plugin.evaluation.sessions",
        description="Long-form scores of whole-session hypotheses against their reference segments.",
    )
    parser.add_argument("hypotheses", type=Path, help="the run's hypotheses.jsonl")
    parser.add_argument(
        "segments",
        type=Path,
        help="the <instructions>.segments.jsonl of the run's input",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder to write")
    args = parser.parse_args(argv)
    try:
        summary = score_sessions(args.hypotheses, args.segments, args.out)
    except (ValueError, ConvertError, OSError) as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2
    print(json.dumps(summary["metrics"], ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
