"""On-disk cache of LLM-judge outputs, so a rerun calls the judge zero times.

Judging is the slowest part of scoring open answers and must not change
between reruns: each judgement is stored under a hash of everything that can
change it (the judge's identity and settings, the prompt text, the question,
the reference and the hypothesis), one small JSON file per judgement written
atomically, so an interrupted run keeps what it judged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from speechmapper_plugin.atomic_files import atomic_write_text

CACHE_FORMAT_VERSION = 1


def judgement_key(
    judge_identity: str,
    prompt_text: str,
    question: str,
    reference: str,
    hypothesis: str,
) -> str:
    """The cache key of one judgement (SHA-256, hex)."""
    payload = json.dumps(
        {
            "version": CACHE_FORMAT_VERSION,
            "judge": judge_identity,
            "prompt": prompt_text,
            "question": question,
            "reference": reference,
            "hypothesis": hypothesis,
        },
        sort_keys=True,
        ensure_ascii=False,
    )

    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class JudgeCache:
    """Raw judge outputs by :func:`judgement_key`, under ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The stored raw output, or ``None`` (also for an unreadable entry,
        which is then judged again and overwritten)."""
        path = self._path(key)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return None

        raw = record.get("raw") if isinstance(record, dict) else None

        return raw if isinstance(raw, str) else None

    def put(self, key: str, raw: str, judge_identity: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)

        record = {"raw": raw, "judge": judge_identity}

        atomic_write_text(path, json.dumps(record, ensure_ascii=False) + "\n")
