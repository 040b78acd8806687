"""Reading TSV/JSONL manifests: formats, column names, malformed rows, unusable files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechmapper_plugin.data import BadRow, ManifestError, read_manifest
from speechmapper_plugin.data.reasons import MALFORMED_ROW


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_tsv_with_header_resolves_paths_against_the_manifest_dir(
    tmp_path: Path,
) -> None:
    manifest = write(
        tmp_path / "m.tsv",
        "id\taudio\tnum_samples\ttext\tlang\n"
        "a\twav/a.wav\t16000\t hello world \ten\n"
        "b\t/abs/b.flac\t\tbonjour\t\n",
    )

    result = read_manifest(manifest)

    assert result.format == "tsv"
    assert result.bad_rows == []
    a, b = result.rows
    assert (a.id, a.audio, a.num_samples, a.transcript, a.lang, a.line_no) == (
        "a",
        tmp_path.resolve() / "wav/a.wav",
        16000,
        "hello world",
        "en",
        2,
    )
    assert (b.audio, b.num_samples, b.duration, b.lang) == (
        Path("/abs/b.flac"),
        None,
        None,
        None,
    )


def test_tsv_accepts_omnilingual_style_names_and_a_root_line(tmp_path: Path) -> None:
    manifest = write(
        tmp_path / "m.tsv",
        "/data/corpus\naudio_path\tTEXT\tDuration\tLanguage\nx/1.wav\tsalut\t1.5\tfra\n",
    )

    result = read_manifest(manifest)

    (row,) = result.rows
    assert row.audio == Path("/data/corpus/x/1.wav")
    assert row.id == "x/1"  # derived from the path: no id column
    assert (row.duration, row.lang, row.transcript) == (1.5, "fra", "salut")
    assert result.columns == {
        "audio": "audio_path",
        "duration": "Duration",
        "transcript": "TEXT",
        "lang": "Language",
    }


def test_explicit_root_overrides_the_root_line(tmp_path: Path) -> None:
    manifest = write(tmp_path / "m.tsv", "/old/root\naudio\ttext\nx.wav\thi\n")

    result = read_manifest(manifest, root=tmp_path / "new")

    assert result.rows[0].audio == (tmp_path / "new").resolve() / "x.wav"


def test_fairseq2_wav2vec2_layout_with_wrd_transcripts(tmp_path: Path) -> None:
    manifest = write(
        tmp_path / "dev.tsv",
        "/librispeech\ndev-clean/1/1-0.flac\t32000\ndev-clean/1/1-1.flac\t48000\n",
    )
    write(tmp_path / "dev.wrd", "HELLO THERE\nGOOD MORNING\n")

    result = read_manifest(manifest)

    assert result.format == "fairseq2_tsv"
    assert [(r.id, r.audio, r.num_samples, r.transcript) for r in result.rows] == [
        (
            "dev-clean/1/1-0",
            Path("/librispeech/dev-clean/1/1-0.flac"),
            32000,
            "HELLO THERE",
        ),
        (
            "dev-clean/1/1-1",
            Path("/librispeech/dev-clean/1/1-1.flac"),
            48000,
            "GOOD MORNING",
        ),
    ]


def test_fairseq2_layout_without_wrd_is_a_clear_error(tmp_path: Path) -> None:
    manifest = write(tmp_path / "dev.tsv", "/librispeech\na.flac\t32000\n")

    with pytest.raises(ManifestError, match=r"dev\.wrd does not exist"):
        read_manifest(manifest)


def test_fairseq2_layout_with_misaligned_wrd_is_a_clear_error(tmp_path: Path) -> None:
    manifest = write(tmp_path / "dev.tsv", "/librispeech\na.flac\t32000\nb.flac\t1\n")
    write(tmp_path / "dev.wrd", "ONLY ONE\n")

    with pytest.raises(ManifestError, match="2 rows but its transcript file"):
        read_manifest(manifest)


def test_malformed_tsv_rows_are_listed_not_raised(tmp_path: Path) -> None:
    manifest = write(
        tmp_path / "m.tsv",
        b"id\taudio\tnum_samples\tduration\ttext\n"
        b"ok\ta.wav\t100\t\tfine\n"
        b"few\tb.wav\tonly three\n"
        b"many\tc.wav\t1\t\tx\textra\n"
        b"nan\td.wav\tabc\t\tx\n"
        b"neg\te.wav\t-5\t\tx\n"
        b"frac\tf.wav\t1.5\t\tx\n"
        b"dur\tg.wav\t\tinf\tx\n"
        b"\tnoid.wav\t1\t\tx\n"
        b"noaudio\t\t1\t\tx\n"
        b"\xff\xfe\tbroken utf8\n"
        b"\n"
        b"ok2\th.wav\t200\t0.5\t\n",
    )

    result = read_manifest(manifest)

    assert [r.id for r in result.rows] == ["ok", "ok2"]
    assert result.rows[1].transcript == ""  # empty transcripts are the validator's call
    assert all(b.reason == MALFORMED_ROW for b in result.bad_rows)
    by_line = {b.line_no: b for b in result.bad_rows}
    assert sorted(by_line) == [3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert "found 3" in by_line[3].detail and by_line[3].id == "few"
    assert "found 6" in by_line[4].detail
    assert "whole number" in by_line[5].detail and by_line[5].id == "nan"
    assert "negative" in by_line[6].detail
    assert "whole number" in by_line[7].detail
    assert "finite" in by_line[8].detail
    assert "`id` is empty" in by_line[9].detail
    assert "`audio` is empty" in by_line[10].detail
    assert "UTF-8" in by_line[11].detail
    assert result.num_lines == 11


def test_jsonl_rows_and_malformed_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {"id": "a", "audio_filepath": "a.wav", "text": "one", "duration": 2}
        ),
        json.dumps(
            {
                "id": 7,
                "path": "b.wav",
                "sentence": "two",
                "num_samples": 3.0,
                "locale": "de",
            }
        ),
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"id": "c", "audio": "c.wav"}),
        json.dumps({"id": "d", "audio": "d.wav", "text": 5}),
        json.dumps({"id": "e", "audio": "e.wav", "text": "x", "num_samples": True}),
        "",
        json.dumps({"audio": "sub/f.wav", "text": "derived id"}),
    ]
    manifest = write(tmp_path / "m.jsonl", "\n".join(lines) + "\n")

    result = read_manifest(manifest)

    assert [(r.id, r.num_samples, r.duration, r.lang) for r in result.rows] == [
        ("a", None, 2.0, None),
        ("7", 3, None, "de"),
        ("sub/f", None, None, None),
    ]
    details = {b.line_no: b.detail for b in result.bad_rows}
    assert sorted(details) == [3, 4, 5, 6, 7]
    assert "invalid JSON" in details[3]
    assert "JSON object" in details[4]
    assert "missing field `transcript`" in details[5]
    assert "must be a string" in details[6]
    assert "whole number" in details[7]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.tsv", None, "does not exist"),
        ("m.csv", "id,audio,text\n", "unknown extension"),
        ("m.tsv", "", "is empty"),
        ("m.tsv", "a\tb.wav\thello\n", "no header row"),
        ("m.tsv", "id\taudio\nx\tx.wav\n", "lacks required column"),
        ("m.jsonl", "\n\n", "is empty"),
        ("m.jsonl", "{bad\n[1]\n", "no usable row"),
        ("m.tsv", "id\taudio\ttext\nx\ty\n", "no usable row"),
    ],
)
def test_unusable_manifests_raise_clear_errors(
    tmp_path: Path, name: str, content: str | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        write(path, content)

    with pytest.raises(ManifestError, match=message):
        read_manifest(path)


def test_zero_good_rows_can_be_read_for_reporting(tmp_path: Path) -> None:
    manifest = write(tmp_path / "m.tsv", "id\taudio\ttext\nx\ty\n")

    result = read_manifest(manifest, require_rows=False)

    assert result.rows == []
    assert result.bad_rows == [
        BadRow(
            2,
            "x",
            MALFORMED_ROW,
            "expected 3 tab-separated columns (as in the header), found 2",
        )
    ]
