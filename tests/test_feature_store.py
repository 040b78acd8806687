"""The feature store on its own: format, integrity checks, resumption markers."""

from __future__ import annotations

import csv
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from speechmapper_plugin.data import BadRow, ManifestRow
from speechmapper_plugin.data.feature_store import (
    CorruptShardError,
    FeatureStore,
    FeatureStoreError,
    FeatureStoreMetadata,
    IncompleteStoreError,
    ShardWriter,
    StoreMismatchError,
    create_or_check_store,
    discard_unfinished,
    finished_shard_record,
    merge_index,
    plan_shards,
    shards_of_rank,
    storage_dtype,
)
from speechmapper_plugin.data.feature_store.layout import shard_file, shard_record_file
from speechmapper_plugin.data.feature_store.rebuild_index import (
    main as rebuild_index_main,
)
from speechmapper_plugin.data.reasons import (
    DUPLICATE_ID,
    MISSING_FILE,
    NON_FINITE_FEATURES,
)
from speechmapper_plugin.input_checks import is_finite

DIM = 8


def make_rows(n: int) -> list[ManifestRow]:
    return [
        ManifestRow(
            id=f"u{i}",
            audio=Path(f"/data/u{i}.wav"),
            transcript=f"words {i}",
            lang="en",
            line_no=i + 2,
        )
        for i in range(n)
    ]


def make_metadata(
    num_rows: int, rows_per_shard: int, dtype: str = "float16", **kw: object
) -> FeatureStoreMetadata:
    args: dict[str, object] = dict(
        dim=DIM,
        dtype=dtype,
        frame_averaging=2,
        frame_rate=25.0,
        encoder="test_encoder",
        layer=4,
        layer_norm=True,
        manifest="/data/train.tsv",
        manifest_sha256="0" * 64,
        audio_root="/data",
        rows_per_shard=rows_per_shard,
        num_shards=len(plan_shards(num_rows, rows_per_shard)),
        num_rows=num_rows,
    )
    args.update(kw)
    return FeatureStoreMetadata(**args)  # type: ignore[arg-type]


def row_features(i: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(i)
    return torch.randn(3 + i % 4, DIM, generator=g).to(dtype)


def write_store(
    store: Path,
    num_rows: int = 7,
    rows_per_shard: int = 3,
    dtype: str = "float16",
    skip: dict[int, BadRow] | None = None,
    shards: list[int] | None = None,
    nonfinite: set[int] | None = None,
) -> list[ManifestRow]:
    """Writes the shards (all, or ``shards``) the way the extraction does; no merge."""
    rows = make_rows(num_rows)
    meta = make_metadata(num_rows, rows_per_shard, dtype)
    torch_dtype = storage_dtype(dtype)
    manifest_bad = [
        BadRow(1, None, "malformed_row", "header-ish junk"),
        BadRow(99, "u0", DUPLICATE_ID, "again"),
    ]
    create_or_check_store(store, meta, manifest_bad)
    for plan in plan_shards(num_rows, rows_per_shard):
        if shards is not None and plan.index not in shards:
            continue
        writer = ShardWriter(store, plan, dim=DIM, dtype=torch_dtype)
        # Out of order on purpose: storage order must still be manifest order.
        for position in reversed(range(plan.start, plan.stop)):
            if skip and position in skip:
                writer.skip(position, skip[position])
                continue
            features = row_features(position, torch_dtype)
            if nonfinite and position in nonfinite:
                features[1, 2] = float("nan")
                features[0, 0] = float("inf")
            writer.add(
                position, rows[position], features, num_samples=16_000 + position
            )
        writer.finish()
    return rows


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_round_trip(tmp_path: Path, dtype: str) -> None:
    store = tmp_path / "store"
    bad = BadRow(5, "u3", MISSING_FILE, "/data/u3.wav does not exist")
    write_store(store, dtype=dtype, skip={3: bad})

    summary = merge_index(store)
    fs = FeatureStore(store)

    torch_dtype = storage_dtype(dtype)
    assert [e.id for e in fs.entries] == ["u0", "u1", "u2", "u4", "u5", "u6"]
    assert len(fs) == 6 and "u4" in fs and "u3" not in fs
    for entry in fs.entries:
        i = int(entry.id[1:])
        features = fs.read(entry)
        assert features.dtype == torch_dtype
        assert torch.equal(features, row_features(i, torch_dtype))
        assert entry.num_frames == features.size(0)
        assert entry.line_no == i + 2 and entry.num_samples == 16_000 + i
        assert entry.transcript == f"words {i}" and entry.lang == "en"
    assert fs.read("u5", dtype=torch.float32).dtype == torch.float32
    assert fs.metadata.dim == DIM and fs.metadata.dtype == dtype
    assert summary.complete and summary.num_entries == 6 and summary.num_skipped == 3
    assert summary.skipped_by_reason == {
        "malformed_row": 1,
        MISSING_FILE: 1,
        DUPLICATE_ID: 1,
    }
    assert [(b.line_no, b.reason) for b in fs.skipped] == [
        (1, "malformed_row"),
        (5, MISSING_FILE),
        (99, DUPLICATE_ID),
    ]
    with pytest.raises(KeyError, match="No utterance 'u3'"):
        fs.read("u3")


def test_storage_size_is_frames_times_dim_times_two_plus_headers(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    write_store(store, num_rows=6, rows_per_shard=3)
    summary = merge_index(store)

    payload = summary.num_frames * DIM * 2
    headers = summary.feature_bytes - payload
    assert 0 < headers <= 400 * len(summary.shards)  # safetensors JSON header per shard
    with safe_open(str(shard_file(store, 0)), framework="pt") as fp:
        info = json.loads(fp.metadata()["speechmapper-feature-store"])
        assert (info["shard"], info["row_start"], info["row_stop"]) == (0, 0, 3)
        assert fp.get_slice("features").get_dtype() == "F16"


def test_shard_without_entries(tmp_path: Path) -> None:
    store = tmp_path / "store"
    skip = {i: BadRow(i + 2, f"u{i}", MISSING_FILE, "gone") for i in range(3)}
    write_store(store, num_rows=5, rows_per_shard=3, skip=skip)
    merge_index(store)

    fs = FeatureStore(store)
    assert [e.id for e in fs.entries] == ["u3", "u4"]
    assert (
        fs.summary.shards[0].num_entries == 0 and fs.summary.shards[0].num_frames == 0
    )


def test_non_finite_features_are_readable_and_flagged(tmp_path: Path) -> None:
    """A store written by other means may hold NaN/inf: the reader offers the check."""
    store = tmp_path / "store"
    write_store(store, nonfinite={2, 4})
    merge_index(store)
    fs = FeatureStore(store)

    finite = {e.id: is_finite(fs.read(e)) for e in fs.entries}

    assert finite == {f"u{i}": i not in {2, 4} for i in range(7)}
    assert NON_FINITE_FEATURES == "non_finite_features"


def test_flipped_byte_fails_the_checksum(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_store(store)
    merge_index(store)
    path = shard_file(store, 1)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))

    fs = FeatureStore(store)
    fs.read("u0")  # other shards stay readable
    with pytest.raises(CorruptShardError, match="fails its checksum"):
        fs.read("u3")
    with pytest.raises(CorruptShardError):
        FeatureStore(store).verify()


def test_truncated_or_missing_shard_is_refused_even_without_checksums(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    write_store(store)
    merge_index(store)
    with shard_file(store, 0).open("r+b") as fp:
        fp.truncate(100)
    shard_file(store, 2).unlink()

    fs = FeatureStore(store, verify_checksums=False)
    with pytest.raises(CorruptShardError, match="truncated"):
        fs.read("u1")
    with pytest.raises(CorruptShardError, match="missing"):
        fs.read("u6")


def test_tampered_index_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_store(store)
    merge_index(store)
    index = store / "index.jsonl"
    index.write_text(index.read_text().replace('"u1"', '"uX"'))

    with pytest.raises(FeatureStoreError, match="does not match the store summary"):
        FeatureStore(store)


def test_unfinished_store_is_refused_and_merge_names_missing_shards(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    write_store(store, shards=[0, 2])

    with pytest.raises(IncompleteStoreError, match="summary.json is missing"):
        FeatureStore(store)
    with pytest.raises(IncompleteStoreError, match=r"1 of 3 shards .* \(shards 1\)"):
        merge_index(store)

    summary = merge_index(store, allow_incomplete=True)
    assert not summary.complete and summary.missing_shards == [1]
    assert [e.id for e in FeatureStore(store).entries] == ["u0", "u1", "u2", "u6"]


def test_killed_writer_leftovers_are_never_finished(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_store(store, shards=[0, 1])
    plans = plan_shards(7, 3)

    # Killed after the data rename but before the record: data without record.
    shard_record_file(store, 1).unlink()
    # Killed mid-write: only a temporary file.
    tmp = store / "shards" / ".shard_000002.safetensors.tmp.host.123"
    tmp.write_bytes(b"partial")

    assert finished_shard_record(store, plans[0]) is not None
    assert finished_shard_record(store, plans[1]) is None
    assert finished_shard_record(store, plans[2]) is None

    # A record whose data file was truncated afterwards is not finished either.
    with shard_file(store, 0).open("r+b") as fp:
        fp.truncate(10)
    assert finished_shard_record(store, plans[0]) is None

    for plan in plans:
        discard_unfinished(store, plan)
    assert sorted(p.name for p in (store / "shards").iterdir()) == []


def test_checksum_verification_on_resume(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_store(store, shards=[0])
    plan = plan_shards(7, 3)[0]
    path = shard_file(store, 0)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))

    assert finished_shard_record(store, plan) is not None  # same size
    assert finished_shard_record(store, plan, verify_checksum=True) is None


def test_resuming_with_other_settings_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    create_or_check_store(store, make_metadata(7, 3), [])

    assert (
        create_or_check_store(store, make_metadata(7, 3, created_by="again"), [])
        is True
    )
    with pytest.raises(StoreMismatchError, match="layer: store has 4, run wants 12"):
        create_or_check_store(store, make_metadata(7, 3, layer=12), [])
    with pytest.raises(StoreMismatchError, match="rows_per_shard"):
        create_or_check_store(store, make_metadata(7, 4), [])


def test_writer_rejects_wrong_shapes_and_positions(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rows = make_rows(3)
    create_or_check_store(store, make_metadata(3, 3), [])
    writer = ShardWriter(store, plan_shards(3, 3)[0], dim=DIM, dtype=torch.float16)

    with pytest.raises(FeatureStoreError, match="expected \\[frames, 8\\]"):
        writer.add(0, rows[0], torch.zeros(4, 5, dtype=torch.float16), 1)
    with pytest.raises(FeatureStoreError, match="the store holds torch.float16"):
        writer.add(0, rows[0], torch.zeros(4, DIM), 1)
    with pytest.raises(ValueError, match="not in shard"):
        writer.skip(3, BadRow(5, "x", MISSING_FILE))
    writer.add(0, rows[0], torch.zeros(4, DIM, dtype=torch.float16), 1)
    with pytest.raises(ValueError, match="already written"):
        writer.add(0, rows[0], torch.zeros(4, DIM, dtype=torch.float16), 1)
    with pytest.raises(ValueError, match="2 rows pending"):
        writer.finish()


def test_sharding_is_fixed_slices_round_robin_over_ranks() -> None:
    plans = plan_shards(10, 3)

    assert [(p.start, p.stop) for p in plans] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert [p.index for p in shards_of_rank(plans, 0, 2)] == [0, 2]
    assert [p.index for p in shards_of_rank(plans, 1, 2)] == [1, 3]
    assert [p.index for p in shards_of_rank(plans, 0, 1)] == [0, 1, 2, 3]


def test_rebuild_index_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "store"
    write_store(store)

    assert rebuild_index_main([str(store), "--verify"]) == 0

    assert "complete; 7 utterances, 2 skipped" in capsys.readouterr().out
    lines = (store / "index.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [f"u{i}" for i in range(7)]
    with (store / "errors.tsv").open() as fp:
        assert [r["reason"] for r in csv.DictReader(fp, delimiter="\t")] == [
            "malformed_row",
            DUPLICATE_ID,
        ]

    shard_record_file(store, 1).unlink()
    assert rebuild_index_main([str(store)]) == 1
    assert "not finished (shards 1)" in capsys.readouterr().err


def test_concurrent_reads_match_sequential_reads(tmp_path: Path) -> None:
    """Data-pipeline workers read from one store object in parallel threads."""
    store = tmp_path / "store"
    write_store(store, num_rows=12, rows_per_shard=2)
    merge_index(store)
    fs = FeatureStore(store, max_open_shards=2)  # forces closing and reopening
    expected = {e.id: fs.read(e) for e in fs.entries}

    def read_all(_: int) -> bool:
        return all(
            torch.equal(fs.read(e), expected[e.id]) for e in reversed(fs.entries)
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(read_all, range(16)))
