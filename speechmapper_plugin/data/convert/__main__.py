"""``python -m speechmapper_plugin.data.convert CORPUS ...``: a local copy of a
test set -> manifest and/or instruction file. Exit status 0 on success, 2 when
the input cannot be converted (the message says why and what to do)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from speechmapper_plugin.data.convert.covost2 import convert_covost2
from speechmapper_plugin.data.convert.europarl_st import convert_europarl_st
from speechmapper_plugin.data.convert.fleurs import SPLITS as FLEURS_SPLITS
from speechmapper_plugin.data.convert.fleurs import convert_fleurs
from speechmapper_plugin.data.convert.librispeech import SUBSETS, convert_librispeech
from speechmapper_plugin.data.convert.librisqa import convert_librisqa
from speechmapper_plugin.data.convert.report import ConversionReport, ConvertError
from speechmapper_plugin.data.convert.spoken_squad import convert_spoken_squad


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m speechmapper_plugin.data.convert",
        description="Convert a local copy of a test set into a manifest (.tsv) and/or an instruction file (.jsonl). Nothing is downloaded.",
    )
    corpora = parser.add_subparsers(dest="corpus", required=True)

    p = _corpus(
        corpora,
        convert_librispeech,
        "LibriSpeech subset -> ASR manifest",
        "root",
        "the LibriSpeech folder (holding test-clean/, ...)",
    )
    p.add_argument("--subset", required=True, choices=SUBSETS)
    p.add_argument("--out", required=True, type=Path, help="manifest to write (.tsv)")

    p = _corpus(
        corpora,
        convert_fleurs,
        "FLEURS language split -> ASR manifest",
        "root",
        "the google/fleurs repository (holding data/)",
    )
    p.add_argument("--lang", required=True, help="FLEURS language folder, e.g. en_us")
    p.add_argument("--split", required=True, choices=FLEURS_SPLITS)
    p.add_argument(
        "--text",
        choices=("raw", "normalized"),
        default="raw",
        help="raw (cased, punctuated; default) or normalized transcription",
    )
    p.add_argument("--out", required=True, type=Path)

    p = _corpus(
        corpora,
        convert_europarl_st,
        "EuroParl-ST pair -> segment manifest + ST instructions",
        "root",
        "the release folder (holding <src>/audios, <src>/<tgt>/)",
    )
    p.add_argument("--src", required=True)
    p.add_argument("--tgt", required=True)
    p.add_argument("--split", required=True, help="train, dev or test")
    p.add_argument(
        "--audio-dir",
        type=Path,
        default=None,
        help="folder of converted .flac/.wav speeches (default: <src>/audios)",
    )
    p.add_argument(
        "--whole-session",
        action="store_true",
        help="one row per speech (its segments joined) and "
        "<out-instructions>.segments.jsonl (the segments), for long-form scoring",
    )
    _outputs(p)

    p = _corpus(
        corpora,
        convert_covost2,
        "CoVoST 2 pair -> ASR manifest + ST instructions",
        "cv_dir",
        "Common Voice 4 folder of the source language (clips/, validated.tsv)",
    )
    p.add_argument(
        "--covost-tsv",
        required=True,
        type=Path,
        help="covost_v2.<src>_<tgt>.tsv (or its .<split>.tsv from get_covost_splits.py)",
    )
    p.add_argument("--split", required=True, choices=("train", "dev", "test"))
    _outputs(p)

    p = _corpus(
        corpora,
        convert_librisqa,
        "LibriSQA Part I/II json + LibriSpeech -> SQA instructions",
        "path",
        "LibriSQA-PartI-test.json or LibriSQA-PartII-test.json",
        metavar="json",
    )
    p.add_argument(
        "--librispeech",
        required=True,
        type=Path,
        help="the LibriSpeech folder (test-clean/ ...)",
    )
    p.add_argument("--part", choices=("auto", "1", "2"), default="auto")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt choice")

    p = _corpus(
        corpora,
        convert_spoken_squad,
        "Spoken-SQuAD json + sentence wavs -> paragraph wavs + SQA instructions",
        "json_path",
        "spoken_test-v1.1.json (SQuAD format)",
        metavar="json",
    )
    p.add_argument(
        "--audio-dir",
        required=True,
        type=Path,
        help="unzipped Spoken-SQuAD_audio folder of the split (<topic>_<paragraph>_<sentence>.wav)",
    )
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--index-base", choices=("auto", "0", "1"), default="auto")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt choice")

    return parser


Converter = Callable[..., ConversionReport]
"""Takes the options of its command as keyword arguments."""


def _corpus(
    corpora: argparse._SubParsersAction[argparse.ArgumentParser],
    convert: Converter,
    help: str,
    source: str,
    source_help: str,
    *,
    metavar: str | None = None,
) -> argparse.ArgumentParser:
    """The command of one corpus (named after its converter): the local copy
    to read (``source``, the converter's first parameter), then its options."""
    name = convert.__name__.removeprefix("convert_")
    p = corpora.add_parser(name, help=help)
    p.add_argument(source, metavar=metavar, type=Path, help=source_help)
    p.set_defaults(convert=convert)
    return p


def _outputs(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out-manifest",
        dest="manifest",
        type=Path,
        default=None,
        help="ASR manifest (.tsv) of the source speech",
    )
    p.add_argument(
        "--out-instructions",
        dest="instructions",
        type=Path,
        default=None,
        help="ST instruction file (.jsonl)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt choice")


def run(args: argparse.Namespace) -> ConversionReport:
    """Calls the corpus's converter: each option's name is its parameter's."""
    options = dict(vars(args))
    del options["corpus"]
    convert: Converter = options.pop("convert")
    return convert(**options)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run(args)
    except ConvertError as ex:
        print(f"error: {ex}", file=sys.stderr)
        return 2
    print("\n".join(report.summary_lines()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
