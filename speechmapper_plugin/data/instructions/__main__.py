"""Builds stage-2 instruction files from feature stores (or manifests).

    python -m speechmapper_plugin.data.instructions asr --store OUT/features --out train.jsonl [--pool train|eval]
    python -m speechmapper_plugin.data.instructions st --store OUT/features --translations tr.tsv --out st.jsonl
    python -m speechmapper_plugin.data.instructions sqa --store OUT/features --questions qa.jsonl --out sqa.jsonl

``tr.tsv`` has columns ``id``, ``translation``, ``target_lang``; ``qa.jsonl`` has
objects with ``id``, ``question``, ``answer``. Ids are the store's utterance ids.
Transcripts are written as the store holds them; ASR examples say that their
response is the transcript, and stage 2 writes it (and its MSE targets) with
the run's ``target_llm.transcript_normalization``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.instructions.builders import (
    SpeechRecord,
    build_asr_examples,
    build_sqa_examples,
    build_st_examples,
)
from speechmapper_plugin.data.instructions.example import (
    InstructionExample,
    write_instructions,
)


def _records(store_path: Path) -> dict[str, SpeechRecord]:
    store = FeatureStore(store_path, verify_checksums=False)
    return {
        e.id: SpeechRecord(id=e.id, transcript=e.transcript, lang=e.lang)
        for e in store.entries
    }


def _lookup(records: dict[str, SpeechRecord], uid: str, where: str) -> SpeechRecord:
    if uid not in records:
        raise SystemExit(f"{where}: utterance '{uid}' is not in the feature store.")
    return records[uid]


def _translations(
    path: Path, records: dict[str, SpeechRecord]
) -> Iterator[tuple[SpeechRecord, str, str]]:
    with path.open(encoding="utf-8", newline="") as fp:
        for n, row in enumerate(csv.DictReader(fp, delimiter="\t"), start=2):
            yield (
                _lookup(records, row["id"], f"{path}:{n}"),
                row["translation"],
                row["target_lang"],
            )


def _questions(
    path: Path, records: dict[str, SpeechRecord]
) -> Iterator[tuple[SpeechRecord, str, str]]:
    with path.open(encoding="utf-8") as fp:
        for n, line in enumerate(fp, start=1):
            if line.strip():
                row = json.loads(line)
                yield (
                    _lookup(records, row["id"], f"{path}:{n}"),
                    row["question"],
                    row["answer"],
                )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m speechmapper_plugin.data.instructions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", choices=["asr", "st", "sqa"])
    parser.add_argument(
        "--store", type=Path, required=True, help="feature store directory"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="instruction JSONL to write"
    )
    parser.add_argument(
        "--pool", choices=["train", "eval"], default="train", help="ASR prompt pool"
    )
    parser.add_argument(
        "--translations", type=Path, help="st: TSV with id, translation, target_lang"
    )
    parser.add_argument(
        "--questions", type=Path, help="sqa: JSONL with id, question, answer"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    records = _records(args.store)
    examples: Iterator[InstructionExample]
    if args.task == "asr":
        examples = build_asr_examples(records.values(), pool=args.pool, seed=args.seed)
    elif args.task == "st":
        if args.translations is None:
            parser.error("st needs --translations")
        examples = build_st_examples(
            _translations(args.translations, records), seed=args.seed
        )
    else:
        if args.questions is None:
            parser.error("sqa needs --questions")
        examples = build_sqa_examples(
            _questions(args.questions, records), seed=args.seed
        )

    n = write_instructions(args.out, examples)
    print(f"Wrote {n} {args.task} examples to {args.out}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
