"""The extraction recipe end to end: ``python -m recipes.extract_features``,
killed and resumed, and split over two processes with ``torchrun``."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from speechmapper_plugin.data.feature_store import (
    FeatureStore,
    IncompleteStoreError,
    finished_shard_record,
    merge_index,
    plan_shards,
)
from speechmapper_plugin.data.feature_store.checksums import sha256_file
from speechmapper_plugin.data.feature_store.layout import shard_file, shard_record_file
from speechmapper_plugin.data.reasons import EMPTY_TRANSCRIPT, MISSING_FILE
from tests.support.audio import synthesize_speech, write_manifest
from tests.support.cards import SessionCards, write_cards
from tests.support.recipes import REPO, recipe_command, recipe_env, run_recipe

SENTENCES = [
    "the cat sat on the mat",
    "features are cached on disk once",
    "seven boats sailed at dawn",
    "please repeat what was said",
    "a quiet morning in the harbour",
    "the projector learns an embedding space",
    "bright stars over a dark sea",
    "one two three four five six",
]

NUM_REPEATS = 30
"""8 x 30 = 240 rows in 60 shards: a few seconds of extraction, long enough to
kill the run in the middle."""

ROWS_PER_SHARD = 4


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory, test_cards: SessionCards) -> Path:
    """A manifest of synthetic speech (each file used by several rows), two bad
    rows, and a card for the tiny test encoder."""
    root = tmp_path_factory.mktemp("recipe_corpus")
    rows: list[dict[str, object]] = []
    for i, sentence in enumerate(SENTENCES):
        synthesize_speech(
            root / "audio" / f"s{i}.wav", sentence, voice=("en-us", "en-gb+m3")[i % 2]
        )
    for k in range(NUM_REPEATS):
        for i, sentence in enumerate(SENTENCES):
            rows.append(
                {
                    "id": f"r{k}_s{i}",
                    "audio": f"audio/s{i}.wav",
                    "text": sentence,
                    "lang": "en",
                }
            )
    rows.insert(
        5, {"id": "gone", "audio": "audio/missing.wav", "text": "x", "lang": "en"}
    )
    rows.insert(77, {"id": "silent", "audio": "audio/s1.wav", "text": "", "lang": "en"})
    write_manifest(root / "train.tsv", rows)
    write_cards(
        root / "cards" / "encoder.yaml",
        [
            {
                "name": "extract_test_encoder",
                "model_family": "sm4t_speech_encoder",
                "model_arch": "tiny",
                "checkpoint": str(test_cards.sm4t_hf_dir),
            }
        ],
    )
    return root


def recipe_args(corpus: Path, *overrides: str) -> list[str]:
    return [
        "--config-file",
        str(REPO / "recipes/extract_features/configs/tiny.yaml"),
        "--config",
        "model.name=extract_test_encoder",
        f"common.assets.extra_paths=[{corpus / 'cards'}]",
        f"dataset.config_overrides.manifests.train={corpus / 'train.tsv'}",
        f"store.rows_per_shard={ROWS_PER_SHARD}",
        *overrides,
    ]


def run_extraction(
    out: Path, corpus: Path, *overrides: str, nproc: int = 1
) -> subprocess.CompletedProcess[str]:
    return run_recipe(
        "extract_features", out, *recipe_args(corpus, *overrides), nproc=nproc
    )


@pytest.fixture(scope="module")
def clean_store(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean_run")
    run_extraction(out, corpus)
    return out / "features"


def shard_state(store: Path, index: int) -> tuple[int, int]:
    stat = shard_file(store, index).stat()
    return stat.st_ino, stat.st_mtime_ns


@pytest.mark.slow
def test_clean_run_builds_a_complete_store(clean_store: Path) -> None:
    fs = FeatureStore(clean_store)

    assert len(fs) == len(SENTENCES) * NUM_REPEATS
    assert {b.id: b.reason for b in fs.skipped} == {
        "gone": MISSING_FILE,
        "silent": EMPTY_TRANSCRIPT,
    }
    assert fs.summary.complete and len(fs.summary.shards) == 61  # 242 rows / 4
    assert (
        fs.metadata.encoder == "extract_test_encoder" and fs.metadata.dtype == "float16"
    )
    assert fs.metadata.created_by.startswith("python -m recipes.extract_features")
    # Identical audio gives identical features, wherever it lands in the batches.
    assert torch.equal(fs.read("r0_s3"), fs.read("r29_s3"))


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing_finished_shards(
    corpus: Path, clean_store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    store = out / "features"
    cmd = recipe_command("extract_features", out, *recipe_args(corpus))

    with (tmp_path / "killed.log").open("w") as log:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=recipe_env(), stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if len(list((store / "shards").glob("shard_*.json"))) >= 3:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
        proc.wait(timeout=60)

    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"

    plans = plan_shards(len(SENTENCES) * NUM_REPEATS + 2, ROWS_PER_SHARD)
    finished = {p.index for p in plans if finished_shard_record(store, p) is not None}
    assert 3 <= len(finished) < len(plans)

    # No reader accepts the killed store or any unfinished shard.
    with pytest.raises(IncompleteStoreError):
        FeatureStore(store)
    with pytest.raises(IncompleteStoreError, match="not finished"):
        merge_index(store)
    for plan in plans:
        record = finished_shard_record(store, plan, verify_checksum=True)
        if plan.index in finished:
            assert (
                record is not None
                and sha256_file(shard_file(store, plan.index)) == record.sha256
            )
        else:
            assert record is None

    before = {k: shard_state(store, k) for k in finished}

    run_extraction(out, corpus)

    log = (out / "logs" / "rank_0.log").read_text()
    assert (
        f"{len(finished)} already finished (skipped), {len(plans) - len(finished)} to extract"
        in log
    )
    assert {k: shard_state(store, k) for k in finished} == before
    assert not [p for p in (store / "shards").iterdir() if ".tmp." in p.name]

    # Totals and content equal a clean run's, byte for byte.
    resumed, clean = FeatureStore(store), FeatureStore(clean_store)
    assert (store / "index.jsonl").read_text() == (
        clean_store / "index.jsonl"
    ).read_text()
    assert (store / "errors.tsv").read_text() == (
        clean_store / "errors.tsv"
    ).read_text()
    assert [s.sha256 for s in resumed.summary.shards] == [
        s.sha256 for s in clean.summary.shards
    ]
    assert resumed.summary.num_frames == clean.summary.num_frames


@pytest.mark.slow
def test_torchrun_two_processes_split_the_shards(
    corpus: Path, clean_store: Path, tmp_path: Path
) -> None:
    """Two ranks on CPU (gloo), resuming a store a one-process run started:
    each rank extracts its shards, the last to finish merges an index equal
    to a clean one-process run's."""
    out = tmp_path / "out"
    store = out / "features"
    (store / "shards").mkdir(parents=True)
    for name in ("store.json", "manifest_errors.json"):
        shutil.copy2(clean_store / name, store / name)
    for k in (0, 1, 2):
        shutil.copy2(shard_file(clean_store, k), shard_file(store, k))
        shutil.copy2(shard_record_file(clean_store, k), shard_record_file(store, k))
    before = {k: shard_state(store, k) for k in (0, 1, 2)}

    run_extraction(out, corpus, nproc=2)

    rank0 = (out / "logs" / "rank_0.log").read_text()
    rank1 = (out / "logs" / "rank_1.log").read_text()
    assert "Running on 2 process(es)." in rank0
    # 61 shards: rank 0 takes the 31 even ones, rank 1 the 30 odd ones.
    assert (
        "Rank 0: 31 of 61 shards assigned; 2 already finished (skipped), 29 to extract"
        in rank0
    )
    assert (
        "Rank 1: 30 of 61 shards assigned; 1 already finished (skipped), 29 to extract"
        in rank1
    )
    assert (
        "Rank 1: shard 3 finished" in rank1 and "Rank 0: shard 3 finished" not in rank0
    )
    assert (
        "Rank 0: shard 4 finished" in rank0 and "Rank 1: shard 4 finished" not in rank1
    )
    # Whichever rank finished last merged the index.
    assert (
        "feature store" in rank0 + rank1
        and " complete: 240 utterances" in rank0 + rank1
    )
    assert {k: shard_state(store, k) for k in (0, 1, 2)} == before

    merged, clean = FeatureStore(store), FeatureStore(clean_store)
    assert (store / "index.jsonl").read_text() == (
        clean_store / "index.jsonl"
    ).read_text()
    assert (store / "errors.tsv").read_text() == (
        clean_store / "errors.tsv"
    ).read_text()
    for entry in clean.entries[::7]:
        torch.testing.assert_close(
            merged.read(entry), clean.read(entry), atol=1e-3, rtol=1e-3
        )
