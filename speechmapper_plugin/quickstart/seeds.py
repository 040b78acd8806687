"""The quickstart's σ comparison over several seeds: does σ = 0.9 beat σ = 0
at zero-shot translation for other draws, not just seed 0?

``python -m speechmapper_plugin.quickstart.seeds OUT --seeds 0 1 2`` runs the
whole quickstart once per seed into ``OUT/seed_<s>`` (resumable, like the
quickstart) and writes ``OUT/seeds.json`` and ``OUT/seeds.md``: per metric,
σ = 0.9, σ = 0 and their paired difference for every seed, with mean,
standard deviation and range over seeds.

A seed varies everything the quickstart draws: the toy world's sentences
(so the test set too), the toy LLM, the speech encoder, the speakers'
speeds and pitches, stage 1 and stage 2. The spread is therefore what a
reader rerunning the quickstart with another seed should expect, not only
stage 2's noise. It costs one quickstart per seed (about 15 minutes each on
two cores at the default sizes; ``--small`` for a quick look).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from speechmapper_plugin.quickstart.evaluation import TARGET_LANGS
from speechmapper_plugin.quickstart.layout import QuickstartError, write_result_files
from speechmapper_plugin.quickstart.options import parse_options

DEFAULT_SEEDS: Final = (0, 1, 2)

SEEDS_STEM: Final = "seeds"
SEEDS_JSON: Final = f"{SEEDS_STEM}.json"
SEEDS_MD: Final = f"{SEEDS_STEM}.md"


def seed_dir(out_dir: Path, seed: int) -> Path:
    return out_dir / f"seed_{seed}"


def _metrics() -> list[tuple[str, tuple[str, ...], tuple[str, ...] | None]]:
    """(name, path of the value under a run, path of the paired difference)."""
    rows: list[tuple[str, tuple[str, ...], tuple[str, ...] | None]] = [
        ("ASR WER", ("asr", "wer"), ("asr", "wer"))
    ]
    for lang in TARGET_LANGS:
        rows += [
            (f"{lang} chrF", ("st", lang, "chrf"), (lang, "chrf")),
            (f"{lang} BLEU", ("st", lang, "bleu"), (lang, "bleu")),
            (f"{lang} adherence %", ("st", lang, "adherence"), None),
        ]
    return rows


def _get(data: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(data, Mapping) or data.get(key) is None:
            return None
        data = data[key]
    return data


def _spread(values: Sequence[float | None]) -> dict[str, Any]:
    known = [float(v) for v in values if v is not None]
    return {
        "values": list(values),
        "mean": statistics.fmean(known) if known else None,
        "sd": statistics.stdev(known) if len(known) > 1 else None,
        "min": min(known) if known else None,
        "max": max(known) if known else None,
    }


def aggregate_seeds(summaries: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Per metric: σ = 0.9, σ = 0 and the paired difference per seed, with
    mean, sample standard deviation and range over seeds, and how many
    seeds' paired 95 % intervals lie above and below zero."""
    seeds = sorted(summaries)
    if not seeds:
        raise ValueError("No seed's summary to aggregate.")
    metrics: dict[str, Any] = {}
    for name, path, difference_path in _metrics():
        sigma09 = [_get(summaries[s], path) for s in seeds]
        sigma0 = [_get(summaries[s], ("sigma0", *path)) for s in seeds]
        entry: dict[str, Any] = {
            "sigma09": _spread(sigma09),
            "sigma0": _spread(sigma0),
        }
        if difference_path is not None:
            intervals = [
                _get(summaries[s], ("sigma_difference", *difference_path))
                for s in seeds
            ]
            entry["difference"] = _spread(
                [None if i is None else i["value"] for i in intervals]
            )
            entry["difference"]["seeds_above_zero"] = sum(
                i is not None and i["low"] > 0 for i in intervals
            )
            entry["difference"]["seeds_below_zero"] = sum(
                i is not None and i["high"] < 0 for i in intervals
            )
        metrics[name] = entry
    return {"seeds": seeds, "metrics": metrics}


def _cell(spread: Mapping[str, Any], signed: bool = False) -> str:
    if spread["mean"] is None:
        return "-"
    form = "+.1f" if signed else ".1f"
    sd = "" if spread["sd"] is None else f" ± {spread['sd']:.1f}"
    return f"{spread['mean']:{form}}{sd} ({spread['min']:{form}} to {spread['max']:{form}})"


def format_seeds(aggregate: Mapping[str, Any]) -> str:
    """A Markdown table: mean ± sd (min to max) over seeds."""
    seeds = ", ".join(str(s) for s in aggregate["seeds"])
    lines = [
        f"# The σ comparison over seeds {seeds}",
        "",
        "Mean ± sample standard deviation (min to max) over seeds; a seed redraws "
        "the whole quickstart (sentences, toy LLM, encoder, speech, stage 1 and 2). "
        "'paired > 0' / '< 0': seeds whose paired 95 % interval of σ=0.9 − σ=0 "
        "excludes zero on that side.",
        "",
        "| metric | σ = 0.9 | σ = 0 | σ=0.9 − σ=0 | paired > 0 | paired < 0 |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in aggregate["metrics"].items():
        difference = entry.get("difference")
        lines.append(
            f"| {name} | {_cell(entry['sigma09'])} | {_cell(entry['sigma0'])} | "
            + (
                f"{_cell(difference, signed=True)} | {difference['seeds_above_zero']} | "
                f"{difference['seeds_below_zero']} |"
                if difference is not None
                else "- | - | - |"
            )
        )
    return "\n".join(lines) + "\n"


def write_seeds(out_dir: Path, aggregate: Mapping[str, Any]) -> None:
    write_result_files(out_dir, SEEDS_STEM, aggregate, format_seeds(aggregate))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the quickstart per seed, then aggregate; the other options are
    the quickstart's (sizes, ``--small``, ``--fresh``)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    known, rest = parser.parse_known_args(argv)
    if "--seed" in rest:
        print("Give the seeds with `--seeds S [S ...]`, not `--seed`.", file=sys.stderr)
        return 2
    if len(set(known.seeds)) < 2:
        print("A spread needs at least two different seeds.", file=sys.stderr)
        return 2
    options = parse_options(rest)

    from speechmapper_plugin.quickstart.run import run_quickstart

    summaries = {}
    for seed in known.seeds:
        print(f"== Seed {seed} ==", flush=True)
        try:
            summaries[seed] = run_quickstart(
                replace(options, out_dir=seed_dir(options.out_dir, seed), seed=seed)
            )
        except QuickstartError as ex:
            print(f"The quickstart of seed {seed} stopped: {ex}", file=sys.stderr)
            return 1
    aggregate = aggregate_seeds(summaries)
    write_seeds(options.out_dir, aggregate)
    print()
    print(format_seeds(aggregate))
    return 0


if __name__ == "__main__":
    sys.exit(main())
