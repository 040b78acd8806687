"""Segment rows (``offset`` + ``duration`` of a longer file) through reading,
validation, decoding, the waveform reader, instruction files and extraction;
MP3 and m4a input; the VAD segmenter's padding before and after speech."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq2.gang import create_fake_gangs
from fairseq2.models import load_model

from speechmapper_plugin.audio import decode_audio, load_audio, resample, to_mono
from speechmapper_plugin.audio.segments import SegmenterConfig, VadSegmenter
from speechmapper_plugin.audio.stream import stream_audio
from speechmapper_plugin.data import read_manifest
from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.instructions import (
    InstructionExample,
    InstructionFormatError,
    example_audio_row,
    read_instructions,
    write_instructions,
)
from speechmapper_plugin.data.manifest import BadRow, ManifestRow
from speechmapper_plugin.data.manifest_validation import validate_manifest
from speechmapper_plugin.data.reasons import (
    BAD_SEGMENT,
    MALFORMED_ROW,
    UNDECODABLE_AUDIO,
)
from speechmapper_plugin.data.row_audio import RowAudio, load_row_audio
from speechmapper_plugin.datasets.audio_manifest import AudioManifestDataset
from speechmapper_plugin.datasets.waveform_reader import (
    WaveformReadOptions,
    create_waveform_reader,
)
from speechmapper_plugin.extraction import FeatureExtraction, build_store_metadata
from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4TSpeechEncoder,
    SpeechFeatureExtractor,
)
from speechmapper_plugin.speech_llm import SpeechMapperPipeline
from tests.support.audio import (
    has_espeak,
    synthesize_speech,
    tone,
    write_manifest,
    write_tone,
    write_wav,
)
from tests.support.cards import SessionCards
from tests.support.mp3 import can_write_mp3, write_mp3
from tests.support.recipes import REPO, run_recipe

MIN = 880


def row(audio: Path, offset: float | None, duration: float | None) -> ManifestRow:
    return ManifestRow(
        id="seg", audio=audio, transcript="x", duration=duration, offset=offset
    )


def decoded(audio: Path, offset: float, duration: float | None) -> RowAudio:
    result = load_row_audio(row(audio, offset, duration), min_num_samples=MIN)
    assert isinstance(result, RowAudio), result
    return result


def test_segment_decodes_exactly_the_requested_samples(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "long.wav", 3.0, seed=3)
    full = decode_audio(path).waveform[:, 0]

    audio = decoded(path, 0.75, 1.2)

    assert torch.equal(audio.waveform, full[12_000:31_200])
    assert audio.source_num_samples == 19_200 and audio.duration == pytest.approx(1.2)

    # Without a duration the segment runs to the end of the file.
    assert torch.equal(decoded(path, 2.5, None).waveform, full[40_000:])


def test_segment_is_cut_at_the_file_rate_before_downmix_and_resampling(
    tmp_path: Path,
) -> None:
    path = write_tone(tmp_path / "stereo44k.wav", 2.0, 44_100, channels=2)
    full = decode_audio(path).waveform
    start, stop = round(0.5 * 44_100), round(0.5 * 44_100) + round(0.8 * 44_100)
    expected = resample(to_mono(full[start:stop], channel_dim=1), 44_100, 16_000)

    audio = decoded(path, 0.5, 0.8)

    assert audio.source_num_samples == stop - start
    torch.testing.assert_close(audio.waveform, expected)
    assert audio.waveform.numel() == 12_800


def test_overrun_within_tolerance_is_cut_at_the_end(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "a.wav", 1.0)
    full = decode_audio(path).waveform[:, 0]

    audio = decoded(path, 0.5, 0.505)

    assert torch.equal(audio.waveform, full[8_000:])


@pytest.mark.parametrize(
    ("offset", "duration", "reason", "words"),
    [
        (2.5, 0.5, BAD_SEGMENT, "starts at 2.500 s, at or after the end"),
        (1.0, 1.5, BAD_SEGMENT, "ends at 2.500 s, after the end"),
        (0.5, 0.00001, BAD_SEGMENT, "under one sample"),
    ],
)
def test_segments_outside_the_file_are_bad_rows(
    tmp_path: Path, offset: float, duration: float, reason: str, words: str
) -> None:
    path = write_tone(tmp_path / "a.wav", 2.0)

    bad = load_row_audio(row(path, offset, duration), min_num_samples=MIN)

    assert isinstance(bad, BadRow)
    assert bad.reason == reason and words in bad.detail


def test_validation_counts_every_bad_segment_with_its_reason(tmp_path: Path) -> None:
    audio = write_tone(tmp_path / "long.wav", 2.0)
    rows = [
        {"id": "ok", "audio": "long.wav", "offset": 0.5, "duration": 1.0},
        {"id": "ok_to_end", "audio": "long.wav", "offset": 1.5, "duration": ""},
        {"id": "after_end", "audio": "long.wav", "offset": 2.5, "duration": 0.5},
        {"id": "overrun", "audio": "long.wav", "offset": 1.5, "duration": 1.0},
        {"id": "negative", "audio": "long.wav", "offset": -0.5, "duration": 1.0},
        {"id": "neg_duration", "audio": "long.wav", "offset": 0.5, "duration": -1},
        {"id": "zero", "audio": "long.wav", "offset": 0.5, "duration": 0},
        {"id": "nan", "audio": "long.wav", "offset": "nan", "duration": 1.0},
    ]
    for r in rows:
        r["text"] = "words"
    manifest = write_manifest(tmp_path / "segments.tsv", rows)
    assert audio.is_file()

    for check_audio in (True, False):
        report = validate_manifest(manifest, check_audio=check_audio)
        reasons = {p.id: p.reason for p in report.problems}
        expected = {
            "negative": BAD_SEGMENT,
            "neg_duration": BAD_SEGMENT,
            "zero": BAD_SEGMENT,
            "nan": MALFORMED_ROW,
        }
        if check_audio:
            expected |= {"after_end": BAD_SEGMENT, "overrun": BAD_SEGMENT}
        assert reasons == expected
        if check_audio:
            # Usable audio counts the segments, not their files.
            assert report.usable_seconds == pytest.approx(1.5)


def test_manifest_reads_offset_columns_in_tsv_and_jsonl(tmp_path: Path) -> None:
    tsv = tmp_path / "m.tsv"
    tsv.write_text("id\taudio\tstart\tduration\ttext\na\tx.wav\t1.25\t2\thi\n")
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text(
        json.dumps({"audio_filepath": "x.wav", "offset": 3, "text": "hi"}) + "\n"
    )

    (a,) = read_manifest(tsv).rows
    (b,) = read_manifest(jsonl).rows

    assert (a.offset, a.duration, a.is_segment) == (1.25, 2.0, True)
    assert (b.offset, b.duration, b.is_segment) == (3.0, None, True)
    whole = write_manifest(tmp_path / "w.tsv", [{"audio": "x.wav", "text": "hi"}])
    assert not read_manifest(whole).rows[0].is_segment


def test_waveform_reader_batches_segments_of_one_file(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "long.wav", 4.0, seed=1)
    full = decode_audio(path).waveform[:, 0]
    rows = [row(path, float(k), 0.9) for k in range(4)]
    rows = [ManifestRow(**{**r.__dict__, "id": f"s{k}"}) for k, r in enumerate(rows)]

    reader = create_waveform_reader(
        rows,
        create_fake_gangs(torch.device("cpu")),
        min_num_samples=MIN,
        options=WaveformReadOptions(max_batch_size=3, num_parallel_decodes=2),
    )
    seen = {}
    for batches in reader:
        for batch in batches:
            for position, audio in zip(batch.audio_positions, batch.audio, strict=True):
                seen[position] = audio.waveform

    assert sorted(seen) == [0, 1, 2, 3]
    for k in range(4):
        assert torch.equal(seen[k], full[k * 16_000 : k * 16_000 + 14_400])


def test_instruction_examples_carry_segments(tmp_path: Path) -> None:
    path = write_tone(tmp_path / "talk.wav", 3.0)
    full = decode_audio(path).waveform[:, 0]
    file = tmp_path / "st.jsonl"
    write_instructions(
        file,
        [
            InstructionExample(
                id="a",
                audio="talk.wav",
                offset=1.0,
                duration=0.5,
                instruction="Translate into German.\n<speech>",
                response="Hallo",
                task="st",
                target_lang="de",
            ),
            InstructionExample(
                id="b",
                audio="talk.wav",
                instruction="<speech> Which?",
                response="B",
                task="sqa",
                question="Which?",
                options=("one", "two"),
                answers=("two", "2"),
            ),
        ],
    )

    a, b = read_instructions(file)

    assert (a.offset, a.duration) == (1.0, 0.5)
    assert (b.question, b.options, b.answers) == (
        "Which?",
        ("one", "two"),
        ("two", "2"),
    )
    audio_row = example_audio_row(a, 1)
    assert audio_row is not None and audio_row.audio == path.resolve()
    audio = load_row_audio(audio_row, min_num_samples=MIN)
    assert isinstance(audio, RowAudio)
    assert torch.equal(audio.waveform, full[16_000:24_000])
    whole = example_audio_row(b, 2)
    assert whole is not None and not whole.is_segment


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"offset": -1}, "non-negative number of seconds"),
        ({"duration": "2"}, "non-negative number of seconds"),
        ({"offset": 1, "audio": None, "speech": "u"}, "needs `audio`"),
        ({"options": "A, B"}, "list of strings"),
        ({"answers": [1, 2]}, "list of strings"),
    ],
)
def test_bad_segment_or_qa_fields_in_instruction_files_are_errors(
    tmp_path: Path, fields: dict[str, object], words: str
) -> None:
    data: dict[str, object] = {"id": "a", "audio": "x.wav", "instruction": "<speech>"}
    data |= fields
    data = {k: v for k, v in data.items() if v is not None}
    file = tmp_path / "bad.jsonl"
    file.write_text(json.dumps(data) + "\n")

    with pytest.raises(InstructionFormatError, match=words):
        read_instructions(file)


@pytest.mark.skipif(not can_write_mp3(), reason="libsndfile cannot write MP3 here")
def test_mp3_clips_decode_whole_and_as_segments(tmp_path: Path) -> None:
    samples = tone(2.0, 48_000, seed=5)
    path = write_mp3(tmp_path / "clip.mp3", samples, 48_000)

    whole = decode_audio(path)
    audio = decoded(path, 0.5, 1.0)

    assert whole.sample_rate == 48_000
    assert abs(whole.waveform.size(0) - samples.size) <= 1152  # one MP3 frame
    # Lossy, but the same signal: strongly correlated with the source.
    n = min(whole.waveform.size(0), samples.size)
    corr = np.corrcoef(whole.waveform[:n, 0].numpy(), samples[:n])[0, 1]
    assert corr > 0.9
    assert audio.waveform.numel() == 16_000
    expected = resample(whole.waveform[24_000:72_000, 0], 48_000, 16_000)
    torch.testing.assert_close(audio.waveform, expected)


def test_m4a_is_an_undecodable_row_that_says_how_to_convert(tmp_path: Path) -> None:
    # A real AAC stream cannot be made offline here; any .m4a fails the same way
    # in libsndfile ("Format not recognised").
    path = tmp_path / "speech.m4a"
    path.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00" + bytes(64))

    bad = load_row_audio(row(path, 0.0, 1.0), min_num_samples=MIN)

    assert isinstance(bad, BadRow) and bad.reason == UNDECODABLE_AUDIO
    assert "ffmpeg -i" in bad.detail and "speech.flac" in bad.detail


def test_extraction_stores_segment_features_and_lists_bad_segments(
    tmp_path: Path,
) -> None:
    encoder = load_model("test_sm4t_hf", device=torch.device("cpu"))
    assert isinstance(encoder, SM4TSpeechEncoder)
    path = write_wav(tmp_path / "talk.wav", tone(3.0, seed=2))
    manifest = write_manifest(
        tmp_path / "seg.tsv",
        [
            {
                "id": "a",
                "audio": "talk.wav",
                "offset": 0.0,
                "duration": 1.0,
                "text": "x",
            },
            {
                "id": "b",
                "audio": "talk.wav",
                "offset": 1.3,
                "duration": 1.2,
                "text": "x",
            },
            {
                "id": "late",
                "audio": "talk.wav",
                "offset": 2.5,
                "duration": 1,
                "text": "x",
            },
        ],
    )

    split = AudioManifestDataset({"train": manifest}).read_split("train")
    extractor = SpeechFeatureExtractor(encoder, layer=4, frame_averaging=2)
    store = tmp_path / "store"
    extraction = FeatureExtraction(
        store=store,
        rows=split.rows,
        manifest_bad_rows=split.bad_rows,
        metadata=build_store_metadata(
            split, extractor, encoder="test_sm4t_hf", dtype="float32", rows_per_shard=2
        ),
        extractor=extractor,
        gangs=create_fake_gangs(torch.device("cpu")),
    )
    _, summary = extraction.run()

    assert summary is not None and summary.num_skipped == 1
    with (store / "errors.tsv").open() as fp:
        errors = {r["id"]: r["reason"] for r in csv.DictReader(fp, delimiter="\t")}
    assert errors == {"late": BAD_SEGMENT}

    fs = FeatureStore(store)
    full = decode_audio(path).waveform[:, 0]
    entry = fs.entry("b")
    expected, _ = extractor([full[20_800:40_000]])
    assert entry.num_samples == 19_200
    torch.testing.assert_close(
        fs.read(entry).float(), expected[0], atol=1e-5, rtol=1e-5
    )


@pytest.mark.slow
@pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox")
def test_generate_recipe_answers_for_exactly_the_segment(
    tmp_path: Path, test_cards: SessionCards
) -> None:
    """Two sentences in one recording; each segment example gets the hypothesis
    the pipeline gives for that segment's samples alone, and a segment past the
    end is skipped as ``bad_segment``."""
    parts = [
        decode_audio(
            synthesize_speech(tmp_path / f"p{k}.wav", sentence, speed=140)
        ).waveform[:, 0]
        for k, sentence in enumerate(
            ["the old dog saw a bird", "seven boats sailed at dawn"]
        )
    ]
    gap = torch.zeros(8_000)
    long = write_wav(
        tmp_path / "talk.wav", torch.cat([parts[0], gap, parts[1]]).numpy()
    )
    full = decode_audio(long).waveform[:, 0]
    second_start = parts[0].numel() + gap.numel()
    segments = {
        "first": (0.0, parts[0].numel() / 16_000),
        "second": (second_start / 16_000, parts[1].numel() / 16_000),
        "late": (full.numel() / 16_000 + 1.0, 1.0),
    }
    instruction = "Transcribe the audio.\n<speech>"
    file = tmp_path / "segments.jsonl"
    write_instructions(
        file,
        [
            InstructionExample(
                id=name,
                audio=str(long),
                offset=offset,
                duration=duration,
                instruction=instruction,
                task="asr",
            )
            for name, (offset, duration) in segments.items()
        ],
    )

    out = tmp_path / "out"
    run_recipe(
        "generate",
        out,
        "--config-file",
        str(REPO / "recipes/generate/configs/tiny.yaml"),
        "--config",
        "model.name=test_projector_llama",
        "sfm.name=test_sm4t_hf",
        "llm.name=test_llama",
        f"common.assets.extra_paths=[{test_cards.card_dir}]",
        f"input.instructions={file}",
    )

    records = {
        r["id"]: r
        for r in map(json.loads, (out / "hypotheses.jsonl").read_text().splitlines())
    }
    assert sorted(records) == ["first", "second"]
    pipeline = SpeechMapperPipeline.from_cards(
        "test_sm4t_hf",
        "test_projector_llama",
        "test_llama",
        device="cpu",
        generation=GenerationConfig(max_new_tokens=32, max_gen_len=(1.0, 16)),
    )
    starts = {"first": 0, "second": second_start}
    for name, part in zip(("first", "second"), parts, strict=True):
        alone = full[starts[name] : starts[name] + part.numel()]
        (expected,) = pipeline.run(alone, instruction)
        assert records[name]["hypothesis"] == expected.text
        assert records[name]["num_speech_positions"] == expected.num_speech_positions
    skipped = (out / "skipped.tsv").read_text().splitlines()[1].split("\t")
    assert skipped[1:3] == ["late", BAD_SEGMENT]


@pytest.mark.skipif(not has_espeak(), reason="needs espeak-ng and sox")
def test_vad_pads_after_speech_separately_from_before(tmp_path: Path) -> None:
    """``speech_pad_end_ms`` moves only the regions' ends, by exactly its
    samples (the unpadded regions as the reference); unset, the end takes
    ``speech_pad_ms`` as before."""
    speech = load_audio(
        synthesize_speech(tmp_path / "u.wav", "The apple waits under the garden.")
    ).numpy()
    silence = np.zeros(16_000, np.float32)
    path = write_wav(
        tmp_path / "recording.wav",
        np.concatenate([silence, speech, silence, speech, silence]),
    )

    def regions(**pads: int) -> list[tuple[int, int]]:
        vad = VadSegmenter(SegmenterConfig(kind="vad", **pads))
        return [(r.start, r.end) for r in vad.speech_regions(stream_audio(path))]

    bare = regions(speech_pad_ms=0)
    ms = 16
    assert len(bare) == 2
    assert regions(speech_pad_ms=30, speech_pad_end_ms=300) == [
        (a - 30 * ms, b + 300 * ms) for a, b in bare
    ]
    assert regions(speech_pad_ms=30) == [(a - 30 * ms, b + 30 * ms) for a, b in bare]


def test_vad_end_padding_must_stay_inside_the_pause() -> None:
    with pytest.raises(ValueError, match="speech_pad_end_ms.*min_silence_ms"):
        SegmenterConfig(kind="vad", speech_pad_end_ms=400).check()
    with pytest.raises(ValueError, match="negative"):
        SegmenterConfig(kind="vad", speech_pad_end_ms=-1).check()
    SegmenterConfig(kind="vad", speech_pad_ms=0, speech_pad_end_ms=300).check()
