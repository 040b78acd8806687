"""Configuration and architectures of the adapter families of Verdini et al.

One model family (``speech_adapter``) holds the six adapters compared or cited
by Verdini et al. 2024 ("How to Connect Speech Foundation Models and Large
Language Models? What Matters and What Does Not", arXiv 2409.17044); the
``kind`` field picks the length adapter. Every adapter is

    frames -> Linear(input_dim, model_dim) -> [pre-encoder] -> length adapter
           -> [post-encoder] -> Linear(model_dim, output_dim)

where the encoders are pre-LN Transformer encoders (the paper's modality
adapter) and the length adapter is the kind's (``kinds.py``: one entry per
kind, with its builder, length rule and arch sizes).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from typing import Final

from fairseq2.runtime.config_registry import ConfigRegistrar
from fairseq2.runtime.dependency import DependencyContainer
from fairseq2.utils.validation import ValidationResult

from speechmapper_plugin.models.adapters.ctc import CTC_MERGES, CTCMerge
from speechmapper_plugin.models.adapters.kinds import (
    ADAPTER_KINDS,
    AdapterKind,
    LengthAdapterKind,
    adapter_kind,
)
from speechmapper_plugin.models.frames import LengthT
from speechmapper_plugin.models.projector_base import ProjectorConfigBase
from speechmapper_plugin.validation import (
    check_divisible,
    check_non_negative_fields,
    check_positive_fields,
)

SPEECH_ADAPTER_FAMILY: Final = "speech_adapter"


@dataclass(kw_only=True)
class AdapterConfig(ProjectorConfigBase):
    """Holds the configuration of one adapter (see the module docstring); the
    fields it shares with the SpeechMapper projector are the base's."""

    kind: AdapterKind = "base"
    """The length adapter (an entry of ``kinds.ADAPTER_KIND_REGISTRY``)."""

    model_dim: int = 1024
    """The width of the Transformer layers and of the length adapter."""

    num_pre_layers: int = 0
    """Transformer encoder layers before the length adapter (at the frame rate)."""

    num_post_layers: int = 2
    """Transformer encoder layers after the length adapter."""

    num_attn_heads: int = 16

    ffn_inner_dim: int = 4096

    # conv
    conv_kernel_size: int = 3
    conv_stride: int = 2
    conv_padding: int = 1
    num_conv_layers: int = 2
    """``conv``: Conv1d+GELU layers; the rate is divided by ``conv_stride`` each."""

    # wlq_former, qformer
    window_size: int = 8
    """``wlq_former``: frames per window (after averaging); the last window may
    be partial. 8 frames at 25 Hz are 0.32 s (SALMONN's 0.33 s windows)."""

    num_queries: int = 1
    """``wlq_former``: queries (outputs) per window; ``qformer``: outputs per utterance."""

    num_qformer_layers: int = 2
    """Q-Former layers: self-attention over the queries, cross-attention to the
    frames, feed-forward."""

    # cif
    cif_threshold: float = 1.0
    """``cif``: the accumulated weight at which an output fires."""

    cif_tail_threshold: float = 0.5
    """``cif``: at inference a remainder at least this large fires a last output."""

    cif_kernel_size: int = 3
    """``cif``: the kernel of the Conv1d of the weight predictor."""

    # ctc_compression
    ctc_vocab_size: int = 128_256
    """``ctc_compression``: the CTC vocabulary: the target LLM's tokenizer
    (blank is one extra class, index ``ctc_vocab_size``)."""

    ctc_merge: CTCMerge = "drop_blanks"
    """``ctc_compression``: ``drop_blanks`` averages each run of one token
    and drops blank frames; ``average`` (Gaido et al. 2021's "Avg") averages
    every run, blank runs included. Both emit one output per token when
    trained with targets (stage 1's per-token mode)."""

    @property
    def variable_length(self) -> bool:
        return adapter_kind(self.kind).variable_length

    def averaged_output_length(self, length: LengthT) -> LengthT:
        return adapter_kind(self.kind).output_length(self, length)

    def min_averaged_frames(self) -> int:
        return adapter_kind(self.kind).min_input_length(self)

    def validate(self) -> ValidationResult:
        result = super().validate()

        kind: LengthAdapterKind | None
        try:
            kind = adapter_kind(self.kind)
        except ValueError as ex:
            kind = None
            result.add_error(str(ex))

        check_positive_fields(
            result,
            self,
            (
                "model_dim",
                "num_attn_heads",
                "ffn_inner_dim",
                "conv_kernel_size",
                "conv_stride",
                "num_conv_layers",
                "window_size",
                "num_queries",
                "num_qformer_layers",
                "cif_kernel_size",
                "ctc_vocab_size",
            ),
        )

        check_non_negative_fields(result, self, ("num_pre_layers", "num_post_layers"))

        check_divisible(result, self, "model_dim", "num_attn_heads")

        if not 0 <= self.conv_padding < max(self.conv_kernel_size, 1):
            result.add_error(
                f"`conv_padding` must be in [0, conv_kernel_size), but is {self.conv_padding}."
            )

        if self.ctc_merge not in CTC_MERGES:
            result.add_error(
                f"`ctc_merge` must be one of {', '.join(CTC_MERGES)}, but is '{self.ctc_merge}'."
            )

        if self.cif_kernel_size % 2 != 1:
            result.add_error(
                f"`cif_kernel_size` must be odd (the weights keep the frame rate), but is {self.cif_kernel_size}."
            )

        if self.cif_threshold <= 0.0:
            result.add_error(
                f"`cif_threshold` must be positive, but is {self.cif_threshold}."
            )

        if not 0.0 < self.cif_tail_threshold <= self.cif_threshold:
            result.add_error(
                f"`cif_tail_threshold` must be in (0, cif_threshold], but is {self.cif_tail_threshold}."
            )

        if kind is not None and kind.variable_length and self.num_pre_layers == 0:
            result.add_error(
                f"A `{self.kind}` adapter needs `num_pre_layers` >= 1: its length decisions are made on contextual frames."
            )

        return result


def _tiny(kind: AdapterKind, **kwargs: int | float) -> AdapterConfig:
    """Tens of thousands of parameters: tests and CPU runs on the tiny corpus."""
    entry = adapter_kind(kind)
    config = AdapterConfig(
        kind=kind,
        input_dim=64,
        model_dim=64,
        num_pre_layers=1 if entry.variable_length else 0,
        num_post_layers=1,
        num_attn_heads=4,
        ffn_inner_dim=128,
        dropout_p=0.0,
        output_dim=64,
        window_size=4,
        num_queries=1,
        num_qformer_layers=1,
        ctc_vocab_size=256,
    )
    return replace(config, **{**entry.tiny_overrides, **kwargs})  # type: ignore[arg-type]


def _paper(kind: AdapterKind) -> AdapterConfig:
    """The size we use for the paper grid: 1024-d, 16 heads, FFN 4096 (the
    SeamlessM4T-v2 encoder's width), a 2-layer modality adapter."""
    entry = adapter_kind(kind)
    config = AdapterConfig(
        kind=kind,
        num_pre_layers=2 if entry.variable_length else 0,
        num_post_layers=0 if entry.variable_length else 2,
    )
    return replace(config, **entry.paper_overrides)  # type: ignore[arg-type]


def register_speech_adapter_configs(container: DependencyContainer) -> None:
    """Each kind at paper size (Llama-3.1-8B / Mistral-7B width, 4096, from
    1024-d SFM features) as ``<kind>``, and tiny as ``<kind>_tiny``."""
    arch = ConfigRegistrar(container, AdapterConfig)

    for kind in ADAPTER_KINDS:
        arch(kind)(partial(_paper, kind))

    for kind in ADAPTER_KINDS:
        arch(f"{kind}_tiny")(partial(_tiny, kind))
