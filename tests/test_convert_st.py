"""EuroParl-ST and CoVoST 2 converters on miniature copies of their real layouts."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from sacrebleu.metrics import BLEU

from speechmapper_plugin.audio import decode_audio, resample
from speechmapper_plugin.data import read_manifest
from speechmapper_plugin.data.convert import (
    ConvertError,
    convert_covost2,
    convert_europarl_st,
)
from speechmapper_plugin.data.convert.__main__ import main
from speechmapper_plugin.data.convert.europarl_st import read_segments, segments_path
from speechmapper_plugin.data.instructions import example_audio_row, read_instructions
from speechmapper_plugin.data.manifest_validation import validate_manifest
from speechmapper_plugin.data.reasons import (
    BAD_SEGMENT,
    DUPLICATE_ID,
    EMPTY_TRANSCRIPT,
    MALFORMED_ROW,
    MISSING_FILE,
)
from speechmapper_plugin.data.row_audio import RowAudio, load_row_audio
from speechmapper_plugin.evaluation.sessions import score_sessions
from tests.support.audio import tone, write_tone
from tests.support.mp3 import can_write_mp3, write_mp3

SPEECH_A = "en.20080924.31.3-260"
SPEECH_B = "en.20090114.17.3-111"


def write_europarl(root: Path, *, converted: bool) -> Path:
    """``v1.1/en/audios/*.m4a`` (+ ``.flac`` copies if ``converted``) and
    ``v1.1/en/de/test/segments.{lst,en,de}``."""
    base = root / "v1.1" / "en"
    audios = base / "audios"
    for name, seconds, seed in ((SPEECH_A, 4.0, 0), (SPEECH_B, 3.0, 1)):
        audios.mkdir(parents=True, exist_ok=True)
        (audios / f"{name}.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A " + bytes(32))
        if converted:
            wav = write_tone(audios / f"{name}.wav", seconds, 44_100, seed=seed)
            subprocess.run(["sox", str(wav), str(audios / f"{name}.flac")], check=True)
            wav.unlink()
    split = base / "de" / "test"
    split.mkdir(parents=True)
    segments = [
        (
            f"{SPEECH_A} 0.00 1.52",
            "Thank you, Mr President.",
            "Vielen Dank, Herr Präsident.",
        ),
        (f"{SPEECH_A} 1.52 3.25", "I agree\u2028entirely.", "Ich stimme völlig zu."),
        (
            f"{SPEECH_B} 0.40 2.10",
            "The vote will take place tomorrow.",
            "Die Abstimmung findet morgen statt.",
        ),
        (f"{SPEECH_B} 3.50 4.20", "After the speech.", "Nach der Rede."),
        (  # the first line again
            f"{SPEECH_A} 0.00 1.52",
            "Thank you, Mr President.",
            "Vielen Dank, Herr Präsident.",
        ),
        (f"{SPEECH_B} 2.50 3.90", "It overruns the speech.", "Es ist zu lang."),
        (f"{SPEECH_B} 2.00 2.00", "Zero length.", "Null."),
        (f"{SPEECH_B} 1.0", "Two fields.", "Zwei Felder."),
        (f"{SPEECH_A} 3.30 3.90", "", "Leer."),
        ("en.20100101.1.1-1 0.00 1.00", "No such speech.", "Keine Rede."),
    ]
    (split / "segments.lst").write_text("".join(f"{s}\n" for s, _, _ in segments))
    (split / "segments.en").write_text(
        "".join(f"{e}\n" for _, e, _ in segments), encoding="utf-8"
    )
    (split / "segments.de").write_text(
        "".join(f"{d}\n" for _, _, d in segments), encoding="utf-8"
    )
    (split / "speakers.lst").write_text("spk1\nspk2\n")
    return root / "v1.1"


def test_europarl_st_m4a_only_is_refused_with_the_conversion_command(
    tmp_path: Path,
) -> None:
    root = write_europarl(tmp_path, converted=False)

    with pytest.raises(ConvertError) as info:
        convert_europarl_st(
            root, "en", "de", "test", manifest=tmp_path / "m.tsv", instructions=None
        )

    message = str(info.value)
    assert "2 EuroParl-ST audio file(s) are '.m4a'" in message
    assert "ffmpeg" in message and "-ar 16000" in message and ".flac" in message
    assert not (tmp_path / "m.tsv").exists()


def test_europarl_st_segments_to_manifest_and_instructions(tmp_path: Path) -> None:
    root = write_europarl(tmp_path, converted=True)
    manifest, instructions = tmp_path / "ep.tsv", tmp_path / "ep_st.jsonl"

    report = convert_europarl_st(
        root, "en", "de", "test", manifest=manifest, instructions=instructions
    )

    # What validation would refuse is counted here, with the line it is on:
    # a segment after the end of its 3 s speech, one that overruns it, a
    # repeated line (the first is kept) and a zero-length one.
    assert report.num_written == 3
    assert dict(report.skipped) == {
        BAD_SEGMENT: 3,
        DUPLICATE_ID: 1,
        MALFORMED_ROW: 1,
        EMPTY_TRANSCRIPT: 1,
        MISSING_FILE: 1,
    }
    lst = root / "en/de/test/segments.lst"
    after, repeated, overrun = report.skipped_examples[:3]
    assert after.startswith(f"{BAD_SEGMENT}: {lst}:4: the segment starts at 3.500 s")
    assert "(3.000 s)" in after
    assert repeated == f"{DUPLICATE_ID}: {lst}:5: the same segment as line 1"
    assert overrun.startswith(f"{BAD_SEGMENT}: {lst}:6: the segment ends at 3.900 s")
    rows = read_manifest(manifest).rows
    assert [(r.offset, r.duration) for r in rows] == [
        (0.0, 1.52),
        (1.52, 1.73),
        (0.4, 1.7),
    ]
    assert rows[1].transcript == "I agree entirely."  # U+2028 kept the lines aligned
    assert rows[0].audio == (root / "en/audios" / f"{SPEECH_A}.flac").resolve()

    # The segment decodes to exactly its samples of the speech (at 44.1 kHz),
    # then resampled like any row.
    full = decode_audio(rows[2].audio).waveform[:, 0]
    audio = load_row_audio(rows[2], min_num_samples=880)
    assert isinstance(audio, RowAudio)
    start, n = round(0.4 * 44_100), round(1.7 * 44_100)
    assert audio.source_num_samples == n
    torch.testing.assert_close(
        audio.waveform, resample(full[start : start + n], 44_100, 16_000)
    )

    # Nothing is left for validation to refuse.
    assert validate_manifest(manifest).ok

    examples = read_instructions(instructions)
    first = examples[0]
    assert (first.task, first.lang, first.target_lang) == ("st", "en", "de")
    assert first.response == "Vielen Dank, Herr Präsident."
    assert first.transcript == "Thank you, Mr President."
    assert "German" in first.instruction and "<speech>" in first.instruction
    assert (first.offset, first.duration) == (0.0, 1.52)
    row = example_audio_row(examples[2], 3)
    assert row is not None and (row.offset, row.duration) == (0.4, 1.7)


def test_europarl_st_misaligned_text_is_refused(tmp_path: Path) -> None:
    root = write_europarl(tmp_path, converted=True)
    de = root / "en" / "de" / "test" / "segments.de"
    de.write_text("".join(de.read_text(encoding="utf-8").splitlines(True)[:-1]))

    with pytest.raises(ConvertError, match="line-aligned"):
        convert_europarl_st(
            root, "en", "de", "test", manifest=tmp_path / "m.tsv", instructions=None
        )


def test_europarl_st_whole_sessions_are_one_row_with_their_segments(
    tmp_path: Path,
) -> None:
    root = write_europarl(tmp_path, converted=True)
    manifest, instructions = tmp_path / "ep.tsv", tmp_path / "ep_st.jsonl"

    report = convert_europarl_st(
        root,
        "en",
        "de",
        "test",
        manifest=manifest,
        instructions=instructions,
        whole_session=True,
    )

    # The same segments are usable as in segment mode (3 of 10 lines), now
    # as 2 speeches: A's two segments joined, B's one.
    assert report.num_written == 2
    assert sum(report.skipped.values()) == 7
    rows = read_manifest(manifest).rows
    assert [(r.id, r.offset, r.duration) for r in rows] == [
        (SPEECH_A, None, None),
        (SPEECH_B, None, None),
    ]
    assert rows[0].transcript == "Thank you, Mr President. I agree entirely."
    assert validate_manifest(manifest).ok
    examples = read_instructions(instructions)
    assert [(e.id, e.offset, e.task) for e in examples] == [
        (f"{SPEECH_A}:st:de", None, "st"),
        (f"{SPEECH_B}:st:de", None, "st"),
    ]
    assert examples[0].response == "Vielen Dank, Herr Präsident. Ich stimme völlig zu."
    segments_file = segments_path(instructions)
    assert segments_file == tmp_path / "ep_st.segments.jsonl"
    assert segments_file in report.outputs
    sessions = read_segments(segments_file)
    audio_a, audio_b = (str(r.audio) for r in rows)
    assert sessions == [
        {
            "id": SPEECH_A,
            "audio": audio_a,
            "segments": [
                {
                    "start": 0.0,
                    "end": 1.52,
                    "transcript": "Thank you, Mr President.",
                    "translation": "Vielen Dank, Herr Präsident.",
                },
                {
                    "start": 1.52,
                    "end": 3.25,
                    "transcript": "I agree entirely.",
                    "translation": "Ich stimme völlig zu.",
                },
            ],
        },
        {
            "id": SPEECH_B,
            "audio": audio_b,
            "segments": [
                {
                    "start": 0.4,
                    "end": 2.1,
                    "transcript": "The vote will take place tomorrow.",
                    "translation": "Die Abstimmung findet morgen statt.",
                }
            ],
        },
    ]

    # Lines listed out of time order still give each speech in time order.
    split = root / "en" / "de" / "test"
    for name in ("segments.lst", "segments.en", "segments.de"):
        lines = (split / name).read_text(encoding="utf-8").split("\n")[:-1]
        (split / name).write_text(
            "".join(f"{line}\n" for line in lines[::-1]), encoding="utf-8"
        )
    again = tmp_path / "again.jsonl"
    convert_europarl_st(
        root, "en", "de", "test", manifest=None, instructions=again, whole_session=True
    )
    assert sorted(read_segments(segments_path(again)), key=str) == sorted(
        sessions, key=str
    )

    # Scoring a run on the sessions: the hypothesis of A is one stream, cut
    # at the reference boundary ("Vielen Dank Herr Präsident." | "Ich stimme
    # zu."), B's hypothesis is exact.
    hypotheses = tmp_path / "hypotheses.jsonl"
    hypotheses.write_text(
        json.dumps(
            {
                "id": examples[0].id,
                "task": "st",
                "target_lang": "de",
                "audio": audio_a,
                "hypothesis": "Vielen Dank Herr Präsident. Ich stimme zu.",
            }
        )
        + "\n"
        + json.dumps(
            {
                "id": examples[1].id,
                "task": "st",
                "target_lang": "de",
                "audio": audio_b,
                "hypothesis": "Die Abstimmung findet morgen statt.",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    summary = score_sessions(hypotheses, segments_file, tmp_path / "long")
    metrics = summary["metrics"]["st/de"]
    assert (metrics["num_examples"], metrics["num_sessions"]) == (3, 2)
    pieces = ["Vielen Dank Herr Präsident.", "Ich stimme zu."]
    references = ["Vielen Dank, Herr Präsident.", "Ich stimme völlig zu."]
    expected = BLEU().corpus_score(
        [*pieces, "Die Abstimmung findet morgen statt."],
        [[*references, "Die Abstimmung findet morgen statt."]],
    )
    assert metrics["bleu"] == pytest.approx(expected.score)
    rows_out = [
        json.loads(line)
        for line in (tmp_path / "long" / "scores.jsonl").read_text().splitlines()
    ]
    assert [s["hypothesis"] for s in rows_out[0]["segments"]] == pieces
    assert (tmp_path / "long" / "comet" / "de" / "src.txt").read_text(
        encoding="utf-8"
    ).splitlines()[:2] == ["Thank you, Mr President.", "I agree entirely."]

    # A record of another input is refused, naming what to give.
    hypotheses.write_text(json.dumps({"id": "other", "task": "st", "hypothesis": "x"}))
    with pytest.raises(ValueError, match="no session in the segments file"):
        score_sessions(hypotheses, segments_file, tmp_path / "long2")


def cv_layout(root: Path) -> Path:
    """Common Voice 4 ``en/``: ``clips/*.mp3`` + ``validated.tsv``."""
    cv = root / "cv-corpus-4-2019-12-10" / "en"
    clips = cv / "clips"
    for k in range(4):
        write_mp3(
            clips / f"common_voice_en_{k}.mp3",
            tone(1.0 + 0.1 * k, 48_000, seed=k),
            48_000,
        )
    (cv / "validated.tsv").write_text(
        "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccent\n"
        'c0\tcommon_voice_en_0.mp3\tHe said "no".\t2\t0\t\t\t\n'
        "c1\tcommon_voice_en_1.mp3\tIt's raining again.\t2\t0\tthirties\tmale\tus\n"
        "c2\tcommon_voice_en_2.mp3\tThe train was late.\t3\t0\t\t\t\n"
        "c3\tcommon_voice_en_3.mp3\tGood morning.\t2\t1\t\t\t\n"
        "c9\tcommon_voice_en_9.mp3\tNo clip for this one.\t2\t0\t\t\t\n",
        encoding="utf-8",
    )
    return cv


COVOST_ZH = (
    "path\ttranslation\tsplit\tclient_id\n"
    "common_voice_en_0.mp3\t他说“不”。\ttest\tc0\n"
    "common_voice_en_1.mp3\t又下雨了。\ttest\tc1\n"
    "common_voice_en_2.mp3\t火车晚点了。\ttrain\tc2\n"
    "common_voice_en_3.mp3\t早上好。\tdev\tc3\n"
    "common_voice_en_9.mp3\t没有音频。\ttest\tc9\n"
)


@pytest.mark.skipif(not can_write_mp3(), reason="libsndfile cannot write MP3 here")
def test_covost2_joins_validated_tsv_and_reads_mp3(tmp_path: Path) -> None:
    cv = cv_layout(tmp_path)
    covost = tmp_path / "covost_v2.en_zh-CN.tsv"
    covost.write_text(COVOST_ZH, encoding="utf-8")
    manifest, instructions = tmp_path / "cv.tsv", tmp_path / "cv_st.jsonl"

    report = convert_covost2(
        cv, covost, "test", manifest=manifest, instructions=instructions
    )

    assert report.num_written == 2 and dict(report.skipped) == {MISSING_FILE: 1}
    rows = read_manifest(manifest).rows
    assert [(r.id, r.transcript, r.lang) for r in rows] == [
        ("common_voice_en_0", 'He said "no".', "en"),
        ("common_voice_en_1", "It's raining again.", "en"),
    ]
    validation = validate_manifest(manifest)
    assert validation.ok and dict(validation.sample_rates) == {48_000: 2}

    examples = read_instructions(instructions)
    assert [(e.target_lang, e.response) for e in examples] == [
        ("zh", "他说“不”。"),
        ("zh", "又下雨了。"),
    ]
    assert "Chinese" in examples[0].instruction
    assert examples[0].transcript == 'He said "no".'


@pytest.mark.skipif(not can_write_mp3(), reason="libsndfile cannot write MP3 here")
def test_covost2_per_split_tsv_needs_no_validated_tsv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cv = cv_layout(tmp_path)
    (cv / "validated.tsv").unlink()
    split_tsv = tmp_path / "covost_v2.en_de.test.tsv"
    split_tsv.write_text(
        "path\tsentence\ttranslation\tclient_id\n"
        "common_voice_en_2.mp3\tThe train was late.\tDer Zug hatte Verspätung.\tc2\n"
        "common_voice_en_3.mp3\tGood morning.\tGuten Morgen.\tc3\n",
        encoding="utf-8",
    )
    out = tmp_path / "de.jsonl"

    args = ["covost2", str(cv), "--covost-tsv", str(split_tsv), "--split", "test"]
    assert main([*args, "--out-instructions", str(out)]) == 0
    assert [e.response for e in read_instructions(out)] == [
        "Der Zug hatte Verspätung.",
        "Guten Morgen.",
    ]

    assert main([*args[:-1], "dev", "--out-instructions", str(out)]) == 2
    assert "holds the 'test' split" in capsys.readouterr().err

    full = tmp_path / "covost_v2.en_de.tsv"
    full.write_text(COVOST_ZH, encoding="utf-8")
    assert (
        main(
            [
                "covost2",
                str(cv),
                "--covost-tsv",
                str(full),
                "--split",
                "test",
                "--out-instructions",
                str(out),
            ]
        )
        == 2
    )
    assert "validated.tsv" in capsys.readouterr().err


def test_europarl_st_whole_session_flag_on_the_command_line(tmp_path: Path) -> None:
    root = write_europarl(tmp_path, converted=True)
    out = tmp_path / "ep_st.jsonl"

    args = ["europarl_st", str(root), "--src", "en", "--tgt", "de", "--split", "test"]
    assert main([*args, "--whole-session", "--out-instructions", str(out)]) == 0

    # One row per speech (two speeches), and the segments beside them.
    assert len(read_instructions(out)) == 2
    assert len(read_segments(segments_path(out))) == 2
