"""What both projector families (``speechmapper``, ``speech_adapter``) share:
the config fields of what they take and give, their length answers, and the
checks of their input before any layer runs.

One copy, so that the SpeechMapper projector and every adapter read the same
fields and refuse the same inputs with the same errors; its own module so that
neither family imports the other for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import ClassVar

import torch
from fairseq2.nn import BatchLayout
from fairseq2.utils.validation import ValidationResult
from torch import Tensor
from torch.nn import Module
from typing_extensions import Self

from speechmapper_plugin.input_checks import describe_rows
from speechmapper_plugin.models.frames import LengthT
from speechmapper_plugin.validation import check_positive_fields


def base_card_name(name: str) -> str:
    """``"llama@user"`` -> ``"llama"``: fairseq2 merges ``@env`` cards into their base."""
    return name.split("@", maxsplit=1)[0].strip()


@dataclass(kw_only=True)
class SpeechFeaturesConfig:
    """The speech-encoder features a projector was trained on: a projector fed
    another encoder's, another layer's or differently normalised features runs
    without error and generates nonsense, so inference and later training
    stages compare theirs with this record."""

    encoder: str
    """The speech encoder's asset card (or checkpoint path)."""

    layer: int
    """The 1-based encoder layer."""

    layer_norm: bool
    """Whether the encoder's final LayerNorm was applied to that layer."""

    def differences(self, other: SpeechFeaturesConfig) -> list[str]:
        """What ``other`` has that differs from this record, e.g.
        ``["layer 24 (trained on layer 1)"]`` (empty if nothing)."""
        found = []
        if base_card_name(other.encoder) != base_card_name(self.encoder):
            found.append(f"encoder '{other.encoder}' (trained on '{self.encoder}')")
        if other.layer != self.layer:
            found.append(f"layer {other.layer} (trained on layer {self.layer})")
        if other.layer_norm != self.layer_norm:
            found.append(
                f"layer_norm {other.layer_norm} (trained with layer_norm {self.layer_norm})"
            )
        return found

    def describe(self) -> str:
        """E.g. ``"'enc' layer 1 without its final LayerNorm"``."""
        norm = "with" if self.layer_norm else "without"
        return f"'{self.encoder}' layer {self.layer} {norm} its final LayerNorm"


@dataclass(kw_only=True)
class WarmStartRecord:
    """Where a warm-started projector's weights came from (stage 1's
    ``warm_start``, e.g. a projector retargeted from another LLM): kept in
    its config, so the checkpoint card, every later stage's card and an
    export's card and ``config.json`` say what it was retargeted from."""

    checkpoint: str
    """The weights file the tensors were read from."""

    step: int | None = None
    """Its training step (``None``: an export)."""

    target_llm: str | None = None
    """The LLM the source was trained for."""

    num_loaded_tensors: int = 0
    """How many tensors were copied from the source (all but ``fresh_tensors``)."""

    fresh_tensors: list[str] = field(default_factory=list)
    """The tensors left at their fresh initialisation (another shape, absent
    from the source, or kept fresh by ``keep_fresh``)."""

    keep_fresh: list[str] = field(default_factory=list)
    """The ``warm_start.keep_fresh`` patterns."""

    freeze_loaded_steps: int = 0
    """The steps the loaded tensors stayed frozen."""


@dataclass(kw_only=True)
class ProjectorConfigBase:
    """The fields the SpeechMapper projector and the adapters have alike."""

    input_dim: int = 1024
    """The width of the speech foundation model features."""

    frame_averaging: int = 2
    """Average this many consecutive input frames first (1 = off); an odd
    trailing frame is dropped. Equal in both families, so one feature store
    (averaged as they are) feeds either."""

    output_dim: int = 4096
    """The width of the output: the target LLM's token-embedding width."""

    dropout_p: float = 0.1
    """The dropout probability in the Transformer layers."""

    use_position_encoding: bool = True
    """Sinusoidal position encodings before the Transformer layers (each block's
    in the projector; on the frames and before the post-encoder in an adapter)."""

    max_input_frames: int = 30_000
    """The longest input (in SFM frames, before averaging) accepted: 30 000
    frames are 10 minutes at 50 Hz."""

    target_llm: str | None = None
    """The asset card of the LLM whose embedding space the model was trained
    to map into. Set by the stage-1 recipe; stage 2 and inference refuse an LLM
    other than this one."""

    speech_features: SpeechFeaturesConfig | None = None
    """The speech-encoder features the model was trained on (encoder card,
    layer, LayerNorm; the frame averaging is ``frame_averaging``). Set by the
    stage-1 and stage-2 recipes from their feature stores; later stages refuse
    other features and inference extracts these by default. ``None``: not
    recorded (a projector trained before it was)."""

    warm_started_from: WarmStartRecord | None = None
    """Set by stage 1 when it warm-starts the projector from another one's
    checkpoint (``warm_start.checkpoint``); ``None``: trained from scratch."""

    def validate(self) -> ValidationResult:
        result = ValidationResult()

        check_positive_fields(
            result,
            self,
            ("input_dim", "frame_averaging", "output_dim", "max_input_frames"),
        )

        if not 0.0 <= self.dropout_p < 1.0:
            result.add_error(f"`dropout_p` must be in [0, 1), but is {self.dropout_p}.")

        features = self.speech_features
        if features is not None and features.layer < 1:
            result.add_error(
                f"`speech_features.layer` is 1-based, but is {features.layer}."
            )

        return result

    @property
    def variable_length(self) -> bool:
        """Whether the number of outputs depends on what is said."""
        return False

    def max_output_length(
        self, input_length: LengthT, *, pre_averaged: bool = False
    ) -> LengthT:
        """Outputs for ``input_length`` SFM frames (0 = too short): exact, or
        an upper bound if :attr:`variable_length`.

        :param pre_averaged: ``input_length`` counts frames already averaged
            ``frame_averaging``:1 (as in a feature store).
        """
        length = input_length
        if not pre_averaged and self.frame_averaging > 1:
            length = length // self.frame_averaging
        return self.averaged_output_length(length)

    def min_input_frames(self, *, pre_averaged: bool = False) -> int:
        """The shortest input (in frames) that yields at least one output."""
        needed = self.min_averaged_frames()
        return needed if pre_averaged else needed * self.frame_averaging

    def averaged_output_length(self, length: LengthT) -> LengthT:
        """:meth:`max_output_length` for ``length`` averaged frames: the family's rule."""
        raise NotImplementedError

    def min_averaged_frames(self) -> int:
        """:meth:`min_input_frames` in averaged frames: the family's rule."""
        raise NotImplementedError

    def with_output_dim(self, output_dim: int) -> Self:
        """Return a copy targeting an LLM whose embedding width is ``output_dim``."""
        return replace(self, output_dim=output_dim)


class ProjectorInputTooShortError(ValueError):
    """Raised when an input yields no output position at all."""

    def __init__(
        self, rows: Sequence[int], lengths: Sequence[int], minimum: int
    ) -> None:
        super().__init__(
            f"Input too short for the projector ({describe_rows(rows, lengths, 'frames')}); it needs at least {minimum} frames to produce one output position. Drop these utterances before batching."
        )
        self.rows = list(rows)
        self.lengths = list(lengths)
        self.minimum = minimum


class SpeechProjector(Module):
    """What the SpeechMapper projector and every adapter answer alike: their
    output width and lengths, and which inputs they refuse before any layer
    runs (one copy, so that both refuse the same inputs with the same errors).
    """

    config: ProjectorConfigBase

    name: ClassVar[str] = "projector"
    """What the error messages call the module."""

    def __init__(self, config: ProjectorConfigBase) -> None:
        super().__init__()
        self.config = config

    @property
    def output_dim(self) -> int:
        return self.config.output_dim

    @property
    def variable_length(self) -> bool:
        return self.config.variable_length

    def output_lengths(
        self, input_lengths: Tensor, *, pre_averaged: bool = False
    ) -> Tensor:
        """Exact output lengths for ``input_lengths`` frames (0 = too short)."""
        return self.config.max_output_length(input_lengths, pre_averaged=pre_averaged)

    def max_output_lengths(
        self, input_lengths: Tensor, *, pre_averaged: bool = False
    ) -> Tensor:
        """Exact lengths, or an upper bound if :attr:`variable_length`."""
        return self.config.max_output_length(input_lengths, pre_averaged=pre_averaged)

    def check_input(
        self, seqs: Tensor, seqs_layout: BatchLayout, *, pre_averaged: bool
    ) -> Tensor:
        """Refuses a packed batch, a wrong feature width, an input longer than
        ``max_input_frames`` and rows that yield no output; returns the lengths
        on ``seqs``' device.

        :raises ProjectorInputTooShortError: naming the rows that yield no output.
        """
        config, name = self.config, self.name

        if seqs_layout.packed:
            raise ValueError(f"The {name} does not support packed batches.")

        if seqs.dim() != 3 or seqs.size(-1) != config.input_dim:
            raise ValueError(
                f"`seqs` must be [batch, frames, {config.input_dim}], but has shape {tuple(seqs.shape)}."
            )

        factor = config.frame_averaging if pre_averaged else 1
        if seqs_layout.max_seq_len * factor > config.max_input_frames:
            raise ValueError(
                f"An input of {seqs_layout.max_seq_len} frames (pre_averaged={pre_averaged}) exceeds `max_input_frames` ({config.max_input_frames}) of the {name}; split long audio or raise `max_input_frames`."
            )

        seq_lens = seqs_layout.seq_lens_pt.to(seqs.device)

        out_lens = self.max_output_lengths(seq_lens, pre_averaged=pre_averaged)
        if bool((out_lens < 1).any()):
            rows = torch.nonzero(out_lens < 1).flatten().tolist()
            raise ProjectorInputTooShortError(
                rows,
                [int(seq_lens[r]) for r in rows],
                config.min_input_frames(pre_averaged=pre_averaged),
            )

        return seq_lens
