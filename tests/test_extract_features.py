"""Feature extraction in-process: bad input, non-finite features, resumption.

The recipe (subprocesses, kill/resume, torchrun) is tested in
``test_extract_features_recipe.py``; these tests drive the same
``FeatureExtraction`` directly, on the tiny SeamlessM4T-v2 test checkpoint.
"""

from __future__ import annotations

import copy
import csv
from pathlib import Path
from typing import Any

import pytest
import torch
from fairseq2.gang import create_fake_gangs
from fairseq2.models import load_model

from speechmapper_plugin.audio import load_audio
from speechmapper_plugin.data.feature_store import (
    FeatureStore,
    FeatureStoreError,
    StoreMismatchError,
    StoreSummary,
)
from speechmapper_plugin.data.feature_store.layout import shard_file, shard_record_file
from speechmapper_plugin.data.manifest import ManifestError
from speechmapper_plugin.data.reasons import (
    DUPLICATE_ID,
    EMPTY_AUDIO,
    EMPTY_TRANSCRIPT,
    INVALID_AUDIO,
    MALFORMED_ROW,
    MISSING_FILE,
    NON_FINITE_FEATURES,
    TOO_SHORT_AUDIO,
    UNDECODABLE_AUDIO,
)
from speechmapper_plugin.datasets.audio_manifest import AudioManifestDataset
from speechmapper_plugin.datasets.waveform_reader import WaveformReadOptions
from speechmapper_plugin.extraction import (
    ExtractionStopped,
    FeatureExtraction,
    RankReport,
    build_store_metadata,
)
from speechmapper_plugin.input_checks import is_finite
from speechmapper_plugin.models.sm4t_speech_encoder import (
    SM4TSpeechEncoder,
    SpeechFeatureExtractor,
)
from tests.support.audio import (
    synthesize_speech,
    write_corrupt,
    write_empty,
    write_manifest,
    write_nan_audio,
    write_tone,
    write_too_short,
)

SENTENCES = [
    "the cat sat on the mat",
    "features are cached on disk",
    "seven boats sailed at dawn",
    "please repeat what was said",
    "a quiet morning in the harbour",
]


@pytest.fixture(scope="module")
def encoder() -> SM4TSpeechEncoder:
    model = load_model("test_sm4t_hf", device=torch.device("cpu"))
    assert isinstance(model, SM4TSpeechEncoder)
    return model


@pytest.fixture(scope="module")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("speech")
    for i, sentence in enumerate(SENTENCES):
        synthesize_speech(
            directory / f"s{i}.wav", sentence, voice=("en-us", "en-gb+f3")[i % 2]
        )
    synthesize_speech(directory / "s8k.wav", "eight kilohertz speech", sample_rate=8000)
    write_tone(directory / "stereo44k.wav", 1.3, 44_100, channels=2)
    write_corrupt(directory / "corrupt.wav")
    write_empty(directory / "empty.wav")
    write_too_short(directory / "short.wav", 300)
    write_nan_audio(directory / "nan.wav")
    return directory


def good_rows(speech_dir: Path) -> list[dict[str, object]]:
    return [
        {"id": f"s{i}", "audio": str(speech_dir / f"s{i}.wav"), "text": s, "lang": "en"}
        for i, s in enumerate(SENTENCES)
    ]


def make_extraction(
    store: Path,
    manifest: Path,
    model: SM4TSpeechEncoder,
    *,
    dtype: str = "float16",
    rows_per_shard: int = 2,
    layer: int = 4,
) -> FeatureExtraction:
    split = AudioManifestDataset({"train": manifest}).read_split("train")
    extractor = SpeechFeatureExtractor(model, layer=layer, frame_averaging=2)
    metadata = build_store_metadata(
        split,
        extractor,
        encoder="test_sm4t_hf",
        dtype=dtype,
        rows_per_shard=rows_per_shard,
    )
    return FeatureExtraction(
        store=store,
        rows=split.rows,
        manifest_bad_rows=split.bad_rows,
        metadata=metadata,
        extractor=extractor,
        gangs=create_fake_gangs(torch.device("cpu")),
        read_options=WaveformReadOptions(max_num_samples=16_000 * 4, max_batch_size=3),
    )


def extract(
    store: Path, manifest: Path, model: SM4TSpeechEncoder, **kwargs: Any
) -> tuple[RankReport, StoreSummary | None]:
    return make_extraction(store, manifest, model, **kwargs).run()


def errors_by_id(store: Path) -> dict[str, str]:
    with (store / "errors.tsv").open() as fp:
        return {
            r["id"] or f"line {r['line']}": r["reason"]
            for r in csv.DictReader(fp, delimiter="\t")
        }


def test_bad_rows_are_skipped_counted_and_listed(
    tmp_path: Path, speech_dir: Path, encoder: SM4TSpeechEncoder
) -> None:
    rows = good_rows(speech_dir) + [
        {
            "id": "s8k",
            "audio": str(speech_dir / "s8k.wav"),
            "text": "eight",
            "lang": "en",
        },
        {
            "id": "stereo",
            "audio": str(speech_dir / "stereo44k.wav"),
            "text": "tone",
            "lang": "",
        },
        {
            "id": "missing",
            "audio": str(speech_dir / "nope.wav"),
            "text": "x",
            "lang": "",
        },
        {
            "id": "corrupt",
            "audio": str(speech_dir / "corrupt.wav"),
            "text": "x",
            "lang": "",
        },
        {
            "id": "empty",
            "audio": str(speech_dir / "empty.wav"),
            "text": "x",
            "lang": "",
        },
        {
            "id": "short",
            "audio": str(speech_dir / "short.wav"),
            "text": "x",
            "lang": "",
        },
        {"id": "nan", "audio": str(speech_dir / "nan.wav"), "text": "x", "lang": ""},
        {"id": "notext", "audio": str(speech_dir / "s0.wav"), "text": " ", "lang": ""},
        {
            "id": "s1",
            "audio": str(speech_dir / "s2.wav"),
            "text": "duplicate",
            "lang": "",
        },
    ]
    manifest = write_manifest(tmp_path / "train.tsv", rows)
    with manifest.open("a") as fp:
        fp.write("only\ttwo\n")
    store = tmp_path / "store"

    report, summary = extract(store, manifest, encoder)

    assert summary is not None and summary.complete
    assert errors_by_id(store) == {
        "missing": MISSING_FILE,
        "corrupt": UNDECODABLE_AUDIO,
        "empty": EMPTY_AUDIO,
        "short": TOO_SHORT_AUDIO,
        "nan": INVALID_AUDIO,
        "notext": EMPTY_TRANSCRIPT,
        "s1": DUPLICATE_ID,
        "only": MALFORMED_ROW,
    }
    assert summary.num_skipped == 8
    assert summary.skipped_by_reason[MISSING_FILE] == 1

    fs = FeatureStore(store)
    assert [e.id for e in fs.entries] == ["s0", "s1", "s2", "s3", "s4", "s8k", "stereo"]
    assert report.num_stored == 7 and report.num_skipped == 6  # + 2 set aside before

    # Resampled (8 kHz, 44.1 kHz stereo) audio is stored like any other, and
    # each row equals the extractor run on that file alone.
    extractor = SpeechFeatureExtractor(encoder, layer=4, frame_averaging=2)
    for entry_id, name in [
        ("s8k", "s8k.wav"),
        ("stereo", "stereo44k.wav"),
        ("s3", "s3.wav"),
    ]:
        entry = fs.entry(entry_id)
        waveform = load_audio(speech_dir / name)
        expected, lengths = extractor([waveform])
        assert entry.num_samples == waveform.numel()
        assert (
            entry.num_frames
            == int(lengths[0])
            == (1 + (waveform.numel() - 400) // 160) // 2 // 2
        )
        stored = fs.read(entry)
        assert is_finite(stored)
        torch.testing.assert_close(
            stored.float(), expected[0].half().float(), atol=2e-3, rtol=2e-3
        )
    assert fs.metadata.frame_rate == 25.0 and fs.metadata.dim == encoder.model_dim


def test_fp16_overflow_is_skipped_never_stored(
    tmp_path: Path, speech_dir: Path, encoder: SM4TSpeechEncoder
) -> None:
    """Features beyond fp16's range become inf in the store dtype: such rows are
    skipped and listed; bf16 keeps them."""
    loud = copy.deepcopy(encoder)
    with torch.no_grad():
        loud.inner_layer_norm.weight.mul_(1e6)
    manifest = write_manifest(tmp_path / "train.jsonl", good_rows(speech_dir)[:3])

    with pytest.raises(
        FeatureStoreError, match="all 3 rows were skipped \\(non_finite_features: 3\\)"
    ):
        extract(tmp_path / "fp16", manifest, loud, dtype="float16")

    assert errors_by_id(tmp_path / "fp16") == {
        f"s{i}": NON_FINITE_FEATURES for i in range(3)
    }
    detail = (tmp_path / "fp16" / "errors.tsv").read_text()
    assert "exceed the range of float16" in detail and "store as bfloat16" in detail
    empty = FeatureStore(tmp_path / "fp16")
    assert len(empty) == 0 and empty.summary.num_frames == 0

    extract(tmp_path / "bf16", manifest, loud, dtype="bfloat16")
    fs = FeatureStore(tmp_path / "bf16")
    assert len(fs) == 3 and all(is_finite(fs.read(e)) for e in fs.entries)


def test_nan_encoder_output_is_skipped(
    tmp_path: Path, speech_dir: Path, encoder: SM4TSpeechEncoder
) -> None:
    broken = copy.deepcopy(encoder)
    with torch.no_grad():
        broken.inner_layer_norm.bias[3] = float("nan")
    manifest = write_manifest(tmp_path / "train.tsv", good_rows(speech_dir)[:2])

    with pytest.raises(FeatureStoreError, match="non_finite_features: 2"):
        extract(tmp_path / "store", manifest, broken)

    assert (
        "the encoder output holds NaN/inf"
        in (tmp_path / "store" / "errors.tsv").read_text()
    )


def test_rerun_recomputes_only_unfinished_shards(
    tmp_path: Path, speech_dir: Path, encoder: SM4TSpeechEncoder
) -> None:
    manifest = write_manifest(tmp_path / "train.tsv", good_rows(speech_dir))
    store = tmp_path / "store"
    first, _ = extract(store, manifest, encoder)
    assert first.extracted == [0, 1, 2] and first.finished_before == []
    index = (store / "index.jsonl").read_text()
    sha = {s.index: s.sha256 for s in FeatureStore(store).summary.shards}

    # As a killed run leaves things: shard 1's record never written, shard 2
    # truncated after the fact, a temporary file from a writer of shard 0.
    shard_record_file(store, 1).unlink()
    with shard_file(store, 2).open("r+b") as fp:
        fp.truncate(64)
    (store / "shards" / ".shard_000000.safetensors.tmp.host.1").write_bytes(b"junk")
    (store / "summary.json").unlink()
    stat0 = shard_file(store, 0).stat()

    second, summary = extract(store, manifest, encoder)

    assert second.finished_before == [0] and second.extracted == [1, 2]
    after = shard_file(store, 0).stat()
    assert (after.st_ino, after.st_mtime_ns) == (stat0.st_ino, stat0.st_mtime_ns)
    assert (store / "index.jsonl").read_text() == index
    assert summary is not None
    assert {s.index: s.sha256 for s in summary.shards} == sha  # byte-identical shards

    third, _ = extract(store, manifest, encoder)
    assert third.extracted == [] and third.finished_before == [0, 1, 2]


def test_resume_with_other_settings_is_refused(
    tmp_path: Path, speech_dir: Path, encoder: SM4TSpeechEncoder
) -> None:
    manifest = write_manifest(tmp_path / "train.tsv", good_rows(speech_dir)[:2])
    store = tmp_path / "store"
    extract(store, manifest, encoder)

    with pytest.raises(FeatureStoreError, match="layer: store has 4, run wants 3"):
        extract(store, manifest, encoder, layer=3)
    with pytest.raises(FeatureStoreError, match="rows_per_shard"):
        extract(store, manifest, encoder, rows_per_shard=1)
    assert issubclass(StoreMismatchError, FeatureStoreError)


def test_wholly_unusable_input_is_a_clear_error(
    tmp_path: Path, speech_dir: Path, encoder: SM4TSpeechEncoder
) -> None:
    only_bad = write_manifest(
        tmp_path / "bad.tsv",
        [{"id": "a", "audio": str(speech_dir / "corrupt.wav"), "text": "x"}],
    )
    with pytest.raises(FeatureStoreError, match="undecodable_audio: 1"):
        extract(tmp_path / "s1", only_bad, encoder)

    malformed = tmp_path / "malformed.tsv"
    malformed.write_text("id\taudio\ttext\nx\ty\n")
    with pytest.raises(ManifestError, match="no usable row"):
        extract(tmp_path / "s2", malformed, encoder)

    headerless = tmp_path / "headerless.tsv"
    headerless.write_text(f"a\t{speech_dir / 's0.wav'}\thello\n")
    with pytest.raises(ManifestError, match="no header row"):
        extract(tmp_path / "s3", headerless, encoder)
    # Nothing is created for a manifest that cannot be used at all.
    assert not (tmp_path / "s2").exists() and not (tmp_path / "s3").exists()


def test_stop_request_keeps_finished_shards_only(
    tmp_path: Path, speech_dir: Path, encoder: SM4TSpeechEncoder
) -> None:
    """SIGUSR1 (fairseq2's stop signal) stops between batches; a rerun resumes."""
    manifest = write_manifest(tmp_path / "train.tsv", good_rows(speech_dir))
    store = tmp_path / "store"
    extraction = make_extraction(store, manifest, encoder)
    extraction.request_stop()

    with pytest.raises(ExtractionStopped):
        extraction.run()

    assert not list((store / "shards").glob("*.json"))
    report, _ = extract(store, manifest, encoder)
    assert report.extracted == [0, 1, 2] and len(FeatureStore(store)) == 5
