"""Configuration and architectures of the SpeechMapper projector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from fairseq2.runtime.config_registry import ConfigRegistrar
from fairseq2.runtime.dependency import DependencyContainer
from fairseq2.utils.validation import ValidationResult

from speechmapper_plugin.models.frames import (
    ConvShape,
    LengthT,
    conv_stack_min_input_length,
    conv_stack_output_length,
)
from speechmapper_plugin.models.projector_base import ProjectorConfigBase
from speechmapper_plugin.validation import (
    check_divisible,
    check_non_negative_fields,
    check_positive_fields,
)

SPEECHMAPPER_FAMILY: Final = "speechmapper"


@dataclass(kw_only=True)
class ProjectorBlockConfig:
    """One projector block: strided Conv1d -> Transformer encoder -> Linear.

    The convolution maps the previous width to ``model_dim`` and shortens the
    sequence by ``conv_stride``; the Linear maps ``model_dim`` to ``output_dim``
    (the width the next block, or the final projection, consumes).
    """

    model_dim: int
    """The width of the convolution output and of the Transformer layers."""

    output_dim: int
    """The width of the Linear layer that closes the block."""

    num_layers: int = 6
    """The number of Transformer encoder layers."""

    num_attn_heads: int = 16
    """The number of attention heads of each Transformer layer."""

    ffn_inner_dim: int = 4096
    """The inner width of each Transformer feed-forward network."""

    conv_kernel_size: int = 6
    """The kernel size of the strided convolution."""

    conv_stride: int = 2
    """The stride of the convolution; the block divides the frame rate by it."""

    conv_padding: int = 0
    """Zero padding on both sides of the convolution input. With 0 every output
    position is computed from real frames only."""

    @property
    def conv_shape(self) -> ConvShape:
        return self.conv_kernel_size, self.conv_stride, self.conv_padding

    def validate(self) -> ValidationResult:
        result = ValidationResult()

        check_positive_fields(
            result,
            self,
            (
                "model_dim",
                "output_dim",
                "num_attn_heads",
                "ffn_inner_dim",
                "conv_kernel_size",
                "conv_stride",
            ),
        )

        check_non_negative_fields(result, self, ("num_layers",))

        check_divisible(result, self, "model_dim", "num_attn_heads")

        if not 0 <= self.conv_padding < max(self.conv_kernel_size, 1):
            result.add_error(
                f"`conv_padding` must be in [0, conv_kernel_size), but is {self.conv_padding}."
            )

        return result


@dataclass(kw_only=True)
class SpeechMapperConfig(ProjectorConfigBase):
    """Holds the configuration of a SpeechMapper projector.

    The default values are the ``paper`` architecture (SpeechMapper, Mohapatra
    et al., 2026): SFM layer-24 features (1024-d, 50 Hz) are averaged 2:1, then
    Block 1 (Conv1d k6 s2, 6 Transformer layers at 1024-d, Linear 1024->2048),
    Block 2 (Conv1d k6 s2, 6 Transformer layers at 2048-d, Linear 2048->4096) and
    a final Linear 4096->``output_dim`` give 6.25 Hz "speech embeddings".

    The paper does not give heads or FFN sizes. We use 16 heads in both blocks
    (head width 64 and 128) and an FFN of 1.5x the model width (1536 and 3072):
    279.1M parameters for ``output_dim=4096`` (279,134,208), 0.8% above the paper's 277M.
    """

    blocks: list[ProjectorBlockConfig] = field(
        default_factory=lambda: [
            ProjectorBlockConfig(model_dim=1024, output_dim=2048, ffn_inner_dim=1536),
            ProjectorBlockConfig(model_dim=2048, output_dim=4096, ffn_inner_dim=3072),
        ]
    )
    """The projector blocks, applied in order."""

    def averaged_output_length(self, length: LengthT) -> LengthT:
        return conv_stack_output_length(length, (b.conv_shape for b in self.blocks))

    def min_averaged_frames(self) -> int:
        return conv_stack_min_input_length(b.conv_shape for b in self.blocks)

    def validate(self) -> ValidationResult:
        result = super().validate()

        if not self.blocks:
            result.add_error("`blocks` must contain at least one block.")

        if not result.has_error() and all(
            not b.validate().has_error() for b in self.blocks
        ):
            shortest = self.min_input_frames()
            if shortest > self.max_input_frames:
                kernels = [b.conv_kernel_size for b in self.blocks]
                strides = [b.conv_stride for b in self.blocks]
                result.add_error(
                    f"`blocks` conv kernels {kernels} and strides {strides} leave no output position for inputs up to `max_input_frames` ({self.max_input_frames}); the shortest usable input is {shortest} frames."
                )

        return result


def check_llm_embedding_dim(
    config: SpeechMapperConfig, llm_embed_dim: int, llm_name: str = "target LLM"
) -> None:
    """Raise if the projector cannot feed an LLM with ``llm_embed_dim``-wide embeddings."""
    if config.output_dim != llm_embed_dim:
        raise ValueError(
            f"`output_dim` of the projector ({config.output_dim}) does not match the embedding width of {llm_name} ({llm_embed_dim}); set `model_config.output_dim: {llm_embed_dim}` or use a projector trained for that LLM."
        )


def register_speechmapper_configs(container: DependencyContainer) -> None:
    arch = ConfigRegistrar(container, SpeechMapperConfig)

    @arch("paper")
    def paper() -> SpeechMapperConfig:
        return SpeechMapperConfig()

    @arch("tiny")
    def tiny() -> SpeechMapperConfig:
        """A few hundred thousand parameters: tests and the CPU quickstart."""
        return SpeechMapperConfig(
            input_dim=64,
            blocks=[
                ProjectorBlockConfig(
                    model_dim=64,
                    output_dim=64,
                    num_layers=2,
                    num_attn_heads=4,
                    ffn_inner_dim=128,
                )
                for _ in range(2)
            ],
            output_dim=64,
            dropout_p=0.0,
        )
