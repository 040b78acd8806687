"""Reading what ``recipes.generate`` wrote: hypotheses, stop reasons, WER."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechmapper_plugin.quickstart.layout import QuickstartError

HYPOTHESES_FILE = "hypotheses.jsonl"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True)
class GenerationSummary:
    hypotheses: str
    """The path of ``hypotheses.jsonl``."""

    num_generated: int

    num_skipped: int

    stop_reasons: dict[str, int]

    wer: float | None
    """Word error rate in % against the transcripts, if any."""

    shown: list[dict[str, Any]] = field(default_factory=list)
    """The first few records: ``id``, ``reference``, ``hypothesis``, ``stop_reason``."""

    def format_lines(self) -> list[str]:
        stops = ", ".join(f"{k} {v}" for k, v in self.stop_reasons.items())
        wer = "" if self.wer is None else f"; WER {self.wer:.1f} %"
        lines = [
            f"Generation (greedy, held-out audio -> speech encoder -> projector -> LLM): "
            f"{self.num_generated} hypotheses, {self.num_skipped} skipped{wer}",
            f"  stop reasons: {stops}",
        ]
        for record in self.shown:
            lines += [
                f"  {record['id']}  reference:  {record.get('reference', '')}",
                f"  {'':{len(record['id'])}}  hypothesis: {record['hypothesis']!r} ({record['stop_reason']})",
            ]
        return lines


def read_generation(out: Path, num_shown: int) -> GenerationSummary:
    """Summarise the run in ``out`` from its ``hypotheses.jsonl`` and ``summary.json``."""
    hypotheses = out / HYPOTHESES_FILE
    summary_file = out / SUMMARY_FILE
    for path in (hypotheses, summary_file):
        if not path.is_file():
            raise QuickstartError(f"The generation wrote no {path}.")

    summary = json.loads(summary_file.read_text(encoding="utf-8"))
    with hypotheses.open(encoding="utf-8") as fp:
        records = [json.loads(line) for line in fp if line.strip()]

    asr = summary.get("metrics", {}).get("asr") or {}
    return GenerationSummary(
        hypotheses=str(hypotheses),
        num_generated=int(summary["num_generated"]),
        num_skipped=int(summary["num_skipped"]),
        stop_reasons={str(k): int(v) for k, v in summary["stop_reasons"].items()},
        wer=None if asr.get("wer") is None else float(asr["wer"]),
        shown=[
            {
                "id": r["id"],
                "reference": r.get("reference"),
                "hypothesis": r["hypothesis"],
                "stop_reason": r["stop_reason"],
            }
            for r in records[:num_shown]
        ],
    )
