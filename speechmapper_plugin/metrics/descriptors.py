"""How fairseq2's metric recorders print the recipes' own metrics.

fairseq2 formats only the metrics it knows; any other value is printed with
``str``, so a training log read ``mse_word: tensor(0.0070, dtype=torch.float64)``.
Registering a descriptor per metric makes the log print plain numbers. The
display name is the metric's name, because fairseq2's JSONL recorder keys each
value by its display name and readers of ``metrics/*.jsonl`` use those names.
"""

from __future__ import annotations

from typing import Final

from fairseq2.metrics import format_as_float, format_as_int
from fairseq2.metrics.recorders import MetricDescriptor, MetricFormatter
from fairseq2.runtime.dependency import DependencyContainer

_FLOAT_METRICS: Final = (
    # Stage 1 and stage 2.
    ("mse_word", 91),
    ("mse_pad", 92),
    ("mse", 93),
    ("ce", 94),
    # Stage 1 with an adapter's auxiliary terms (CTC, CIF quantity).
    ("ctc", 95),
    ("quantity", 96),
    ("cosine_word", 201),
    ("embedding_wer", 202),
)

_COUNT_METRICS: Final = (
    ("num_frames", 845),
    ("num_response_tokens", 846),
    ("num_mse_examples", 847),
    ("num_skipped_non_finite", 848),
    # The generate and evaluate recipes (alongside fairseq2's num_examples).
    ("num_skipped", 849),
    # Of those, the recordings generated long form (``long_form.enabled``).
    ("num_long_form", 850),
)


def speechmapper_metric_descriptors() -> list[MetricDescriptor]:
    """One descriptor per metric the plugin's recipes record."""
    descriptors = []

    def describe(name: str, priority: int, formatter: MetricFormatter) -> None:
        descriptors.append(MetricDescriptor(name, name, priority, formatter))

    for name, priority in _FLOAT_METRICS:
        describe(name, priority, format_as_float)

    for name, priority in _COUNT_METRICS:
        describe(name, priority, format_as_int)

    return descriptors


def register_metric_descriptors(container: DependencyContainer) -> None:
    for descriptor in speechmapper_metric_descriptors():
        container.collection.register_instance(MetricDescriptor, descriptor)
