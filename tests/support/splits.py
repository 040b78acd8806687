"""Feature stores cut from another: a split of its utterances, or a control.

Stage 1 reads a split as whole feature-store directories, so a train/held-out
split of one extracted store is two stores. The *shuffled control* keeps every
utterance's features and pairs them with another utterance's transcript: a
model trained on it sees the same speech and the same texts, with no link
between them, so whatever it learns is a bias (frequent tokens, lengths), not
a mapping from speech to text.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from speechmapper_plugin.data.feature_store import FeatureStore
from tests.support.feature_store import Utterance, write_feature_store


def copy_utterances(
    source: FeatureStore,
    out: Path,
    ids: Sequence[str],
    *,
    transcripts: Sequence[str] | None = None,
) -> Path:
    """A store of the utterances ``ids`` of ``source`` (same features, storage
    dtype and encoder provenance), with their own transcripts or ``transcripts``."""
    if transcripts is not None and len(transcripts) != len(ids):
        raise ValueError(
            f"{len(transcripts)} transcripts given for {len(ids)} utterances."
        )
    utterances = []
    for i, entry_id in enumerate(ids):
        entry = source.entry(entry_id)
        text = entry.transcript if transcripts is None else transcripts[i]
        utterances.append(Utterance(entry_id, source.read(entry), text))
    return write_feature_store(
        out,
        utterances,
        frame_averaging=source.metadata.frame_averaging,
        dtype=source.metadata.dtype,
        encoder=source.metadata.encoder,
        layer=source.metadata.layer,
        layer_norm=source.metadata.layer_norm,
    )


def shuffled_transcripts(source: FeatureStore, ids: Sequence[str]) -> list[str]:
    """The transcripts of ``ids`` permuted so that no utterance keeps its own:
    in order of length, each utterance takes the next one's transcript (the
    longest takes the shortest's). Neighbours in length have transcripts of
    about the same length, so they still fit the projector's output, and the
    control keeps the real pairs' length statistics."""
    if len(ids) < 2:
        raise ValueError("Shuffling transcripts needs at least two utterances.")
    entries = [source.entry(i) for i in ids]
    order = sorted(range(len(ids)), key=lambda k: (entries[k].num_frames, ids[k]))
    shuffled = [""] * len(ids)
    for rank, k in enumerate(order):
        shuffled[k] = entries[order[(rank + 1) % len(order)]].transcript
    if any(s == e.transcript for s, e in zip(shuffled, entries, strict=True)):
        raise ValueError("Two of the utterances have the same transcript.")
    return shuffled
