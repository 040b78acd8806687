"""LibriSpeech and FLEURS converters on miniature copies of their real layouts."""

from __future__ import annotations

import inspect
import subprocess
from pathlib import Path

import pytest

from speechmapper_plugin.data import read_manifest
from speechmapper_plugin.data.convert import (
    ConvertError,
    convert_fleurs,
    convert_librispeech,
)
from speechmapper_plugin.data.convert.__main__ import build_parser, main
from speechmapper_plugin.data.manifest_validation import validate_manifest
from speechmapper_plugin.data.reasons import (
    MALFORMED_ROW,
    MISSING_FILE,
    MISSING_TRANSCRIPT,
)
from tests.support.audio import write_tone


def write_flac(path: Path, seconds: float, seed: int) -> Path:
    """LibriSpeech ships 16 kHz FLAC; sox turns a tone WAV into one."""
    wav = write_tone(path.with_suffix(".wav"), seconds, seed=seed)
    subprocess.run(["sox", str(wav), str(path)], check=True)
    wav.unlink()
    return path


@pytest.fixture
def librispeech(tmp_path: Path) -> Path:
    """``LibriSpeech/test-clean/<spk>/<chapter>/`` with ``.trans.txt`` + ``.flac``."""
    root = tmp_path / "LibriSpeech"
    chapter = root / "test-clean" / "1089" / "134686"
    chapter.mkdir(parents=True)
    (chapter / "1089-134686.trans.txt").write_text(
        "1089-134686-0000 HE HOPED THERE WOULD BE STEW FOR DINNER\n"
        "1089-134686-0001 STUFF IT INTO YOU HIS BELLY COUNSELLED HIM\n"
    )
    write_flac(chapter / "1089-134686-0000.flac", 1.0, 0)
    write_flac(chapter / "1089-134686-0001.flac", 1.2, 1)
    other = root / "test-clean" / "121" / "121726"
    other.mkdir(parents=True)
    (other / "121-121726.trans.txt").write_text(
        "121-121726-0000 ALSO A POPULAR CONTRIVANCE\n"
        "121-121726-0001 HARANGUE THE TIRESOME PRODUCT OF A TIRELESS TONGUE\n"
    )
    write_flac(other / "121-121726-0000.flac", 0.8, 2)  # 0001 is missing
    (root / "test-other").mkdir()
    return root


def test_librispeech_subset_to_manifest(librispeech: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "test_clean.tsv"

    report = convert_librispeech(librispeech, "test-clean", out)

    assert report.num_written == 3 and dict(report.skipped) == {MISSING_FILE: 1}
    rows = {r.id: r for r in read_manifest(out).rows}
    assert sorted(rows) == ["1089-134686-0000", "1089-134686-0001", "121-121726-0000"]
    first = rows["1089-134686-0000"]
    assert first.transcript == "HE HOPED THERE WOULD BE STEW FOR DINNER"
    assert first.lang == "en"
    assert first.audio == librispeech / "test-clean/1089/134686/1089-134686-0000.flac"
    assert validate_manifest(out).ok


def test_librispeech_audio_without_a_transcript_is_counted(
    librispeech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A chapter that lost its ``trans.txt`` and a FLAC file its chapter's
    ``trans.txt`` does not list are skips with a reason, not silent losses."""
    lost = librispeech / "test-clean" / "2300" / "131720"
    lost.mkdir(parents=True)
    write_flac(lost / "2300-131720-0000.flac", 0.5, 3)
    write_flac(lost / "2300-131720-0001.flac", 0.5, 4)
    unlisted = librispeech / "test-clean/1089/134686/1089-134686-0002.flac"
    write_flac(unlisted, 0.5, 5)
    out = tmp_path / "m.tsv"

    assert (
        main(
            [
                "librispeech",
                str(librispeech),
                "--subset",
                "test-clean",
                "--out",
                str(out),
            ]
        )
        == 0
    )

    printed = capsys.readouterr().out
    assert "wrote 3 examples" in printed
    assert "Skipped 4:" in printed  # the fixture's missing FLAC and these three
    assert "missing_file: 1" in printed and "missing_transcript: 3" in printed
    assert "2300-131720.trans.txt does not exist" in printed
    assert "1089-134686.trans.txt does not list it" in printed
    report = convert_librispeech(librispeech, "test-clean", tmp_path / "again.tsv")
    assert dict(report.skipped) == {MISSING_FILE: 1, MISSING_TRANSCRIPT: 3}


def test_librispeech_accepts_the_parent_or_the_subset_folder(
    librispeech: Path, tmp_path: Path
) -> None:
    a = convert_librispeech(librispeech.parent, "test-clean", tmp_path / "a.tsv")
    b = convert_librispeech(
        librispeech / "test-clean", "test-clean", tmp_path / "b.tsv"
    )

    assert a.num_written == b.num_written == 3


def test_librispeech_cli_and_its_errors(
    librispeech: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "m.tsv"
    args = [
        "librispeech",
        str(librispeech),
        "--subset",
        "test-clean",
        "--out",
        str(out),
    ]

    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "wrote 3 examples" in printed and "missing_file: 1" in printed

    assert main([*args[:3], "dev-clean", "--out", str(out)]) == 2
    assert "No LibriSpeech subset 'dev-clean'" in capsys.readouterr().err

    # A subset folder without transcripts is not LibriSpeech.
    assert main([*args[:3], "test-other", "--out", str(out)]) == 2
    assert "trans.txt" in capsys.readouterr().err


FLEURS_TSV = (
    # id, file name, raw, normalised, characters, num_samples, gender
    '1906\t10004088536354799741.wav\t"Hello," she said; it\'s 5 p.m.\t"hello" she said it\'s 5 p m\th e l l o |\t16000\tFEMALE\n'
    "1906\t1000522212426593645.wav\t\"Hello,\" she said; it's 5 p.m.\thello she said it's 5 p m\th e l l o |\t19200\tMALE\n"
    "1675\t11650123758963425217.wav\tThe café opens at 9.\tthe café opens at 9\tt h e |\t14400\tMALE\n"
    "1676\t999.wav\tA missing file.\ta missing file\ta |\t16000\tMALE\n"
    "broken line with too few columns\n"
)


@pytest.fixture
def fleurs(tmp_path: Path) -> Path:
    """``fleurs/data/en_us/test.tsv`` + ``audio/test/*.wav`` (the unpacked tar)."""
    root = tmp_path / "fleurs"
    lang = root / "data" / "en_us"
    lang.mkdir(parents=True)
    (lang / "test.tsv").write_text(FLEURS_TSV, encoding="utf-8")
    audio = lang / "audio" / "test"
    write_tone(audio / "10004088536354799741.wav", 1.0, seed=0)
    write_tone(audio / "1000522212426593645.wav", 1.2, seed=1)
    write_tone(audio / "11650123758963425217.wav", 0.9, seed=2)
    (lang / "dev.tsv").write_text(FLEURS_TSV, encoding="utf-8")
    (lang / "audio" / "dev.tar.gz").write_bytes(b"not unpacked")
    return root


def test_fleurs_split_to_manifest(fleurs: Path, tmp_path: Path) -> None:
    out = tmp_path / "fleurs_en_test.tsv"

    report = convert_fleurs(fleurs, "en_us", "test", out)

    assert report.num_written == 3
    assert dict(report.skipped) == {MISSING_FILE: 1, MALFORMED_ROW: 1}
    rows = read_manifest(out).rows
    # Two speakers read sentence 1906: ids are the file stems, not the sentence id.
    assert [r.id for r in rows] == [
        "10004088536354799741",
        "1000522212426593645",
        "11650123758963425217",
    ]
    assert rows[0].transcript == '"Hello," she said; it\'s 5 p.m.'
    assert rows[2].transcript == "The café opens at 9."
    assert [r.num_samples for r in rows] == [16000, 19200, 14400]
    assert {r.lang for r in rows} == {"en"}
    report_ok = validate_manifest(out)
    assert report_ok.ok, report_ok.problems


def test_fleurs_normalized_text_and_root_forms(fleurs: Path, tmp_path: Path) -> None:
    out = tmp_path / "n.tsv"

    convert_fleurs(fleurs / "data" / "en_us", "en_us", "test", out, text="normalized")

    assert read_manifest(out).rows[0].transcript == '"hello" she said it\'s 5 p m'


def test_fleurs_packed_audio_says_how_to_unpack(fleurs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConvertError, match="tar -xzf .*dev.tar.gz"):
        convert_fleurs(fleurs, "en_us", "dev", tmp_path / "d.tsv")
    with pytest.raises(ConvertError, match="No FLEURS language folder 'fr_fr'"):
        convert_fleurs(fleurs, "fr_fr", "test", tmp_path / "d.tsv")


@pytest.mark.parametrize(
    "argv",
    [
        ["librispeech", "r", "--subset", "test-clean", "--out", "o"],
        ["fleurs", "r", "--lang", "en_us", "--split", "test", "--out", "o"],
        ["europarl_st", "r", "--src", "en", "--tgt", "de", "--split", "test"],
        ["covost2", "r", "--covost-tsv", "t", "--split", "test"],
        ["librisqa", "j", "--librispeech", "l", "--out", "o"],
        ["spoken_squad", "j", "--audio-dir", "a", "--out-dir", "o"],
    ],
)
def test_every_command_line_option_is_a_parameter_of_its_converter(
    argv: list[str],
) -> None:
    """``run`` passes the options to the converter by name."""
    options = vars(build_parser().parse_args(argv))
    del options["corpus"]
    convert = options.pop("convert")
    inspect.signature(convert).bind(**options)
