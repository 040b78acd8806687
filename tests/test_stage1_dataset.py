"""The stage-1 dataset: counted skips, store/projector checks, batching, sharding."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from fairseq2.gang import FakeGang, Gangs, create_fake_gangs

from speechmapper_plugin.data.reasons import (
    EMPTY_TRANSCRIPT,
    TOO_LONG_FOR_BATCH,
    TOO_SHORT_AUDIO,
    TRANSCRIPT_TOO_LONG,
)
from speechmapper_plugin.datasets.batching import SpeechReadOptions
from speechmapper_plugin.datasets.speech_features import (
    PreparedExample,
    SpeechFeaturesBatch,
    SpeechFeaturesDataset,
    collate_speech_features,
)
from speechmapper_plugin.llm import load_target_llm_embeddings
from speechmapper_plugin.models.speechmapper import get_speechmapper_model_hub
from tests.support.feature_store import Utterance, write_feature_store

CPU = torch.device("cpu")

SENTENCES = [
    "The old dog saw a bird.",
    "A small cat heard the river.",
    "The big horse found a book.",
    "A red fish visited the city.",
    "The tired man helped a child.",
    "A clever woman watched the tree.",
]


@pytest.fixture(scope="module")
def llm():  # type: ignore[no-untyped-def]
    return load_target_llm_embeddings("test_llama")


@pytest.fixture(scope="module")
def projector_config():  # type: ignore[no-untyped-def]
    return get_speechmapper_model_hub().get_arch_config("tiny")


def features(frames: int, seed: int, dim: int = 64) -> torch.Tensor:
    return torch.randn(frames, dim, generator=torch.Generator().manual_seed(seed))


def test_prepare_counts_and_lists_every_skip(
    tmp_path: Path, llm, projector_config
) -> None:  # type: ignore[no-untyped-def]
    ok = [
        Utterance(f"ok{i}", features(80 + 7 * i, i), s) for i, s in enumerate(SENTENCES)
    ]
    bad = [
        Utterance("empty", features(80, 100), "   "),
        Utterance("short", features(10, 101), "The dog."),
        # 20 frames -> 2 output positions, far fewer than the tokens.
        Utterance(
            "dense", features(20, 102), "The old dog saw a bird near the river today."
        ),
        Utterance("long", features(400, 103), "The old dog saw a bird."),
    ]
    store = write_feature_store(tmp_path / "store", ok + bad)
    dataset = SpeechFeaturesDataset({"train": [store]})

    prepared = dataset.prepare(
        "train",
        encode=lambda t: llm.encode(t).tolist(),
        projector=projector_config,
        max_num_frames=300,
    )

    assert [e.id for e in prepared.examples] == [u.id for u in ok]
    report = prepared.report
    assert (
        report.num_examples == 10 and report.num_kept == 6 and report.num_skipped == 4
    )
    reasons = {b.id: (b.reason, b.detail) for b in report.skipped}
    assert reasons["empty"] == (EMPTY_TRANSCRIPT, "the transcript is empty")
    assert reasons["short"][0] == TOO_SHORT_AUDIO
    assert reasons["short"][1].startswith("10 speech-encoder frames give no")
    assert reasons["dense"][0] == TRANSCRIPT_TOO_LONG
    assert reasons["dense"][1].startswith("transcript longer than projector output")
    assert reasons["long"] == (
        TOO_LONG_FOR_BATCH,
        "too long for a batch: 400 frames > max_num_frames 300",
    )
    assert report.counts() == {
        EMPTY_TRANSCRIPT: 1,
        TOO_SHORT_AUDIO: 1,
        TRANSCRIPT_TOO_LONG: 1,
        TOO_LONG_FOR_BATCH: 1,
    }
    for example in prepared.examples:
        assert len(example.token_ids) <= projector_config.max_output_length(
            example.num_frames, pre_averaged=True
        )

    path = tmp_path / "skipped.tsv"
    report.write_tsv(path)
    assert (
        path.read_text().splitlines()[0] == "line\tid\treason\tdetail"
        and len(path.read_text().splitlines()) == 5
    )
    assert f"0\tlong\t{TOO_LONG_FOR_BATCH}\ttoo long for a batch" in path.read_text()

    with pytest.raises(ValueError, match="'dense'.*untrainable_policy"):
        dataset.prepare(
            "train",
            encode=lambda t: llm.encode(t).tolist(),
            projector=projector_config,
            untrainable_policy="error",
        )


def test_unusable_inputs_are_clear_errors(
    tmp_path: Path, llm, projector_config
) -> None:  # type: ignore[no-untyped-def]
    encode = lambda t: llm.encode(t).tolist()  # noqa: E731
    narrow = write_feature_store(
        tmp_path / "narrow", [Utterance("a", features(80, 0, dim=32), "The dog.")]
    )
    with pytest.raises(ValueError, match="holds 32-d features.*`input_dim` 64"):
        SpeechFeaturesDataset({"train": [narrow]}).prepare(
            "train", encode=encode, projector=projector_config
        )

    unaveraged = write_feature_store(
        tmp_path / "raw",
        [Utterance("a", features(80, 0), "The dog.")],
        frame_averaging=1,
    )
    with pytest.raises(ValueError, match="averaged frames 1:1.*`frame_averaging` is 2"):
        SpeechFeaturesDataset({"train": [unaveraged]}).prepare(
            "train", encode=encode, projector=projector_config
        )

    all_bad = write_feature_store(
        tmp_path / "bad", [Utterance("a", features(10, 0), "The dog.")]
    )
    with pytest.raises(
        ValueError, match="No usable example in split 'train'.*1 too_short_audio"
    ):
        SpeechFeaturesDataset({"train": [all_bad]}).prepare(
            "train", encode=encode, projector=projector_config
        )

    with pytest.raises(ValueError, match="Split 'dev' is not in the dataset"):
        SpeechFeaturesDataset({"train": [all_bad]}).prepare(
            "dev", encode=encode, projector=projector_config
        )


def read_epoch(
    dataset: SpeechFeaturesDataset, prepared, gangs: Gangs, **options: object
) -> list[SpeechFeaturesBatch]:  # type: ignore[no-untyped-def]
    reader = dataset.create_reader(
        "train",
        prepared,
        gangs,
        SpeechReadOptions(num_parallel_calls=1, prefetch=1, **options),  # type: ignore[arg-type]
    )
    return [batch for batches in reader for batch in batches]


def test_reader_batches_every_example_once_within_the_frame_budget(
    tmp_path: Path, llm, projector_config
) -> None:  # type: ignore[no-untyped-def]
    utterances = [
        Utterance(f"u{i}", features(60 + 11 * i, i), SENTENCES[i % len(SENTENCES)])
        for i in range(12)
    ]
    store = write_feature_store(tmp_path / "store", utterances)
    dataset = SpeechFeaturesDataset({"train": [store]})
    prepared = dataset.prepare(
        "train", encode=lambda t: llm.encode(t).tolist(), projector=projector_config
    )

    batches = read_epoch(dataset, prepared, create_fake_gangs(CPU), max_num_frames=400)

    seen = [i for b in batches for i in b.ids]
    assert sorted(seen) == sorted(u.id for u in utterances)
    by_id = {u.id: u for u in utterances}
    for batch in batches:
        assert batch.features.size(0) * batch.features.size(1) <= 400
        for row, uid in enumerate(batch.ids):
            n = int(batch.feature_lens[row])
            torch.testing.assert_close(batch.features[row, :n], by_id[uid].features)
            assert torch.all(batch.features[row, n:] == 0)
            tokens = llm.encode(by_id[uid].transcript).tolist()
            assert (
                batch.target_ids[row, : int(batch.target_lens[row])].tolist() == tokens
            )
            assert batch.transcripts[row] == by_id[uid].transcript


def test_data_parallel_ranks_read_disjoint_shares(
    tmp_path: Path, llm, projector_config
) -> None:  # type: ignore[no-untyped-def]
    utterances = [
        Utterance(f"u{i}", features(70, i), SENTENCES[i % 6]) for i in range(10)
    ]
    store = write_feature_store(tmp_path / "store", utterances)
    dataset = SpeechFeaturesDataset({"train": [store]})
    prepared = dataset.prepare(
        "train", encode=lambda t: llm.encode(t).tolist(), projector=projector_config
    )

    shares = []
    for rank in range(2):
        # Only the data-parallel gang matters to the reader.
        gangs = SimpleNamespace(dp=FakeGang(CPU, rank=rank, size=2))
        # A fake gang cannot all-gather; the torchrun test covers synchronised reads.
        batches = read_epoch(
            dataset,
            prepared,
            gangs,  # type: ignore[arg-type]
            batch_size=2,
            example_shuffle_window=0,
            sync_batches=False,
        )
        shares.append({i for b in batches for i in b.ids})

    assert shares[0].isdisjoint(shares[1])
    assert shares[0] | shares[1] == {u.id for u in utterances}
    assert len(shares[0]) == len(shares[1]) == 5


def test_select_equals_collating_the_kept_rows() -> None:
    """A batch's ``select`` (dropping non-finite rows) is the batch the kept
    examples would have made on their own."""
    examples = [
        PreparedExample(0, i, f"u{i}", n, f"t{i}", list(range(1, k + 1)))
        for i, (n, k) in enumerate([(7, 3), (12, 5), (9, 2)])
    ]
    items = [
        {"features": features(e.num_frames, i), "example": e}
        for i, e in enumerate(examples)
    ]
    batch = collate_speech_features(items)
    for mask in ([True, False, True], [False, False, True], [False] * 3):
        got = batch.select(torch.tensor(mask))
        kept = [item for item, m in zip(items, mask, strict=True) if m]
        if not kept:
            assert got.batch_size == 0 and got.features.size(1) == 0
            continue
        want = collate_speech_features(kept)
        assert got.ids == want.ids and got.transcripts == want.transcripts
        for name in ("features", "feature_lens", "target_ids", "target_lens"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
