"""The recipes' metrics print as numbers in fairseq2's logs (not ``tensor(...)``),
and keep their names as JSONL keys."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from fairseq2.file_system import NativeLocalFileSystem
from fairseq2.metrics.recorders import (
    JsonlMetricRecorder,
    LogMetricRecorder,
    MetricDescriptor,
    MetricDescriptorRegistry,
)
from fairseq2.runtime.dependency import get_dependency_resolver

VALUES = {
    "mse_word": torch.tensor(0.0070, dtype=torch.float64),
    "mse_pad": torch.tensor(0.25, dtype=torch.float64),
    "ce": torch.tensor(6.5, dtype=torch.float64),
    "cosine_word": torch.tensor(0.5, dtype=torch.float64),
    "num_frames": torch.tensor(1234),
}


def _registry() -> MetricDescriptorRegistry:
    resolver = get_dependency_resolver()
    return MetricDescriptorRegistry(resolver.collection.resolve(MetricDescriptor))


def test_the_extension_describes_every_recipe_metric() -> None:
    registry = _registry()

    for name in (*VALUES, "mse", "embedding_wer", "num_skipped_non_finite"):
        descriptor = registry.maybe_get(name)
        assert descriptor is not None, name
        assert descriptor.display_name == name


def test_log_lines_hold_plain_numbers(caplog: pytest.LogCaptureFixture) -> None:
    recorder = LogMetricRecorder(_registry())

    with caplog.at_level(logging.INFO):
        recorder.record_metric_values("valid", VALUES, step_nr=10)

    text = caplog.text
    assert "tensor(" not in text
    assert "mse_word: 0.007" in text
    assert "num_frames: 1,234" in text or "num_frames: 1234" in text


def test_jsonl_keys_stay_the_metric_names(tmp_path: Path) -> None:
    recorder = JsonlMetricRecorder(tmp_path, NativeLocalFileSystem(), _registry())

    recorder.record_metric_values("valid", VALUES, step_nr=10)
    recorder.close()

    (line,) = (tmp_path / "metrics" / "valid.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["mse_word"] == pytest.approx(0.0070)
    assert record["num_frames"] == 1234


def _recorded_metric_names() -> set[str]:
    """Every metric name the recipes and the package's recipe units (the
    generation task) add to a metric bag, read from their source (an
    independent list: a new metric without a descriptor fails)."""
    import re

    repo = Path(__file__).resolve().parents[1]
    pattern = re.compile(r"metric_bag\.add\(\s*\"(\w+)\"")
    names: set[str] = set()
    for root in (repo / "recipes", repo / "speechmapper_plugin"):
        for path in root.rglob("*.py"):
            names.update(pattern.findall(path.read_text(encoding="utf-8")))
    return names


def test_every_metric_a_recipe_records_has_a_descriptor() -> None:
    registry = _registry()
    names = _recorded_metric_names()
    assert {
        "mse_word",
        "ce",
        "num_skipped",
    } <= names  # the scan finds the recipes' bags

    # Summed into `embedding_wer` before the values are recorded.
    consumed = {"embedding_word_errors", "embedding_ref_words"}
    # Described by fairseq2 itself when a recipe composes its recorders.
    fairseq2_own = _fairseq2_recipe_metric_names()
    missing = sorted(
        n for n in names - consumed - fairseq2_own if registry.maybe_get(n) is None
    )
    assert missing == []


def _fairseq2_recipe_metric_names() -> set[str]:
    from fairseq2.recipe.composition.metric_recorders import (
        _register_metric_descriptors,
    )
    from fairseq2.runtime.dependency import DependencyContainer

    container = DependencyContainer()
    _register_metric_descriptors(container)
    return {d.name for d in container.collection.resolve(MetricDescriptor)}
