"""The manifest validator: every bad-row kind is found, counted and reported at once."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from speechmapper_plugin.data.manifest import ManifestError
from speechmapper_plugin.data.manifest_validation import validate_manifest
from speechmapper_plugin.data.reasons import (
    DUPLICATE_ID,
    EMPTY_AUDIO,
    EMPTY_TRANSCRIPT,
    INVALID_AUDIO,
    LENGTH_MISMATCH,
    MALFORMED_ROW,
    MISSING_FILE,
    TOO_SHORT_AUDIO,
    UNDECODABLE_AUDIO,
    UNREADABLE_FILE,
)
from speechmapper_plugin.data.validate_manifest import main
from speechmapper_plugin.datasets.audio_manifest import (
    AudioManifestDatasetConfig,
    get_audio_manifest_dataset_hub,
)
from tests.support.audio import (
    write_corrupt,
    write_empty,
    write_manifest,
    write_nan_audio,
    write_tone,
    write_too_short,
    write_wav,
)


@pytest.fixture
def messy_manifest(tmp_path: Path) -> Path:
    audio = tmp_path / "audio"
    write_tone(audio / "good16k.wav", 1.0)
    write_tone(audio / "good8k.wav", 1.0, 8000)
    write_tone(audio / "good44k_stereo.wav", 1.0, 44100, channels=2)
    write_corrupt(audio / "corrupt.wav")
    write_empty(audio / "empty.wav")
    write_wav(audio / "zero_frames.wav", np.zeros(0, dtype=np.float32))
    write_too_short(audio / "short.wav", 300)
    write_nan_audio(audio / "nan.wav")
    (audio / "a_directory.wav").mkdir()

    rows: list[dict[str, object]] = [
        {
            "id": "good16k",
            "audio": "audio/good16k.wav",
            "num_samples": 16000,
            "text": "one",
        },
        {
            "id": "good8k",
            "audio": "audio/good8k.wav",
            "num_samples": 8000,
            "text": "two",
        },
        {
            "id": "stereo",
            "audio": "audio/good44k_stereo.wav",
            "num_samples": 44100,
            "text": "3",
        },
        {"id": "missing", "audio": "audio/nope.wav", "num_samples": 1, "text": "x"},
        {"id": "corrupt", "audio": "audio/corrupt.wav", "num_samples": 1, "text": "x"},
        {"id": "empty", "audio": "audio/empty.wav", "num_samples": 0, "text": "x"},
        {"id": "zero", "audio": "audio/zero_frames.wav", "num_samples": 0, "text": "x"},
        {"id": "short", "audio": "audio/short.wav", "num_samples": 300, "text": "x"},
        {"id": "nan", "audio": "audio/nan.wav", "num_samples": 16000, "text": "x"},
        {"id": "dir", "audio": "audio/a_directory.wav", "num_samples": 1, "text": "x"},
        {
            "id": "notext",
            "audio": "audio/good16k.wav",
            "num_samples": 16000,
            "text": "   ",
        },
        {
            "id": "good16k",
            "audio": "audio/good16k.wav",
            "num_samples": 16000,
            "text": "dup",
        },
        {
            "id": "wronglen",
            "audio": "audio/good16k.wav",
            "num_samples": 20000,
            "text": "x",
        },
    ]
    manifest = write_manifest(tmp_path / "train.tsv", rows)
    with manifest.open("a") as fp:
        fp.write("broken\trow\n")
    return manifest


EXPECTED = {
    5: MISSING_FILE,
    6: UNDECODABLE_AUDIO,
    7: EMPTY_AUDIO,
    8: EMPTY_AUDIO,
    9: TOO_SHORT_AUDIO,
    10: INVALID_AUDIO,
    11: UNREADABLE_FILE,
    12: EMPTY_TRANSCRIPT,
    13: DUPLICATE_ID,
    14: LENGTH_MISMATCH,
    15: MALFORMED_ROW,
}


def test_every_problem_is_found_in_one_pass(messy_manifest: Path) -> None:
    report = validate_manifest(messy_manifest, num_workers=2)

    assert {p.line_no: p.reason for p in report.problems} == EXPECTED
    assert report.num_rows == 14
    assert report.num_bad_rows == len(EXPECTED)
    assert not report.ok
    assert report.counts()[EMPTY_AUDIO] == 2
    # Non-16 kHz and stereo audio is fine: resampled and downmixed.
    assert report.sample_rates[8000] == 1 and report.sample_rates[44100] == 1
    assert report.channels[2] == 1
    assert report.usable_seconds == pytest.approx(3.0, abs=1e-3)
    duplicate = next(p for p in report.problems if p.reason == DUPLICATE_ID)
    assert "line 2" in duplicate.detail


def test_without_audio_check_only_file_level_problems(messy_manifest: Path) -> None:
    report = validate_manifest(messy_manifest, check_audio=False)

    reasons = {p.line_no: p.reason for p in report.problems}
    assert reasons == {
        5: MISSING_FILE,
        7: EMPTY_AUDIO,  # empty file
        8: EMPTY_AUDIO,  # zero samples declared
        11: UNREADABLE_FILE,
        12: EMPTY_TRANSCRIPT,
        13: DUPLICATE_ID,
        15: MALFORMED_ROW,
    }


def test_cli_prints_counts_and_rows_writes_report_and_fails(
    messy_manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_path = tmp_path / "out" / "report.tsv"

    code = main([str(messy_manifest), "--report", str(report_path)])

    out = capsys.readouterr().out
    assert code == 1
    assert "Rows: 14; bad rows: 11" in out
    assert f"  {EMPTY_AUDIO}: 2" in out
    assert "line 6 (id 'corrupt') undecodable_audio" in out
    with report_path.open() as fp:
        table = list(csv.DictReader(fp, delimiter="\t"))
    assert [int(r["line"]) for r in table] == sorted(EXPECTED)
    assert {int(r["line"]): r["reason"] for r in table} == EXPECTED


def test_cli_passes_on_a_clean_manifest(tmp_path: Path) -> None:
    write_tone(tmp_path / "a.wav", 0.5)
    manifest = write_manifest(
        tmp_path / "ok.jsonl",
        [{"id": "a", "audio": "a.wav", "duration": 0.5, "text": "hi"}],
    )

    code = main([str(manifest), "--report", str(tmp_path / "r.tsv")])

    assert code == 0
    assert (tmp_path / "r.tsv").read_text() == "line\tid\treason\tdetail\n"


def test_cli_writes_its_report_next_to_the_manifest_not_into_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    write_tone(data / "a.wav", 0.5)
    manifest = write_manifest(
        data / "ok.jsonl", [{"id": "a", "audio": "a.wav", "text": "hi"}]
    )
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)

    code = main([str(manifest)])

    assert code == 0
    assert list(cwd.iterdir()) == []
    report = data / "ok.jsonl.validation.tsv"
    assert report.read_text() == "line\tid\treason\tdetail\n"


def test_cli_unusable_manifest_exits_2_with_a_message(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "speechmapper_plugin.data.validate_manifest",
            str(tmp_path / "x.tsv"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_dataset_family_serves_usable_rows_and_bad_rows(tmp_path: Path) -> None:
    write_tone(tmp_path / "a.wav", 0.5)
    manifest = write_manifest(
        tmp_path / "train.tsv",
        [
            {"id": "a", "audio": "a.wav", "text": "one"},
            {"id": "a", "audio": "a.wav", "text": "duplicate"},
            {"id": "b", "audio": "b.wav", "text": "x"},
        ],
    )
    with manifest.open("a") as fp:
        fp.write("broken\n")
    hub = get_audio_manifest_dataset_hub()

    dataset = hub.open_custom_dataset(
        AudioManifestDatasetConfig(manifests={"train": manifest})
    )
    split = dataset.read_split("train")

    assert dataset.splits == ["train"]
    assert [r.id for r in split.rows] == ["a", "b"]  # missing audio is found later
    assert [(b.line_no, b.reason) for b in split.bad_rows] == [
        (3, DUPLICATE_ID),
        (5, MALFORMED_ROW),
    ]
    with pytest.raises(ManifestError, match="no split 'dev'; its splits are train"):
        dataset.read_split("dev")
    assert "at least one split" in str(AudioManifestDatasetConfig().validate())
