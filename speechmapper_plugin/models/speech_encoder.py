"""What the two speech-encoder families (``sm4t_speech_encoder``,
``whisper_encoder``) share, written once: the model that runs its blocks only up
to the layer it returns, the config checks, the batch feature extractor's
settings, and the family registration with a checkpoint loader that reads only
the encoder's tensors. Each family keeps what differs: its frontend, its blocks,
its audio features (fbanks or Whisper windows) and its checkpoint keys."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any, ClassVar, Generic, Protocol, TypedDict, TypeVar

import torch
from fairseq2.assets import AssetDownloadManager
from fairseq2.device import Device
from fairseq2.model_checkpoint import ModelCheckpointLoader
from fairseq2.models import (
    ModelFactory,
    ModelFamily,
    ModelStateDictConverter,
    StandardModelFamily,
)
from fairseq2.models.transformer import AttentionBiasCache, TransformerEncoder
from fairseq2.nn import BatchLayout, LayerNorm
from fairseq2.runtime.dependency import (
    DependencyContainer,
    DependencyLookup,
    DependencyResolver,
    wire_object,
)
from fairseq2.utils.validation import ValidationResult
from torch import Tensor
from torch.nn import Module

from speechmapper_plugin.audio import AudioSource, load_audio
from speechmapper_plugin.checkpoints import KeySelector
from speechmapper_plugin.models.encoder_checkpoint import (
    SpeechEncoderCheckpointLoader,
)
from speechmapper_plugin.models.frames import average_frames, zero_padding
from speechmapper_plugin.validation import check_divisible, check_positive_fields


def unwrap_checkpoint(checkpoint: Mapping[str, object]) -> Mapping[str, object]:
    """The state dict of a checkpoint file: Meta's ``.pt`` (like every fairseq2
    checkpoint) nests it under ``model``, next to training metadata."""
    model = checkpoint.get("model")
    if isinstance(model, Mapping):
        return model

    return checkpoint


def encoder_layer_indices(keys: Iterable[str]) -> set[int]:
    """The block indices of a converted state dict's ``encoder.layers.<i>.`` keys."""
    return {
        int(m.group(1)) for k in keys if (m := re.match(r"encoder\.layers\.(\d+)\.", k))
    }


class SpeechEncoderConfig(Protocol):
    """The fields every speech-encoder family's config has."""

    model_dim: int
    num_encoder_layers: int
    num_encoder_attn_heads: int
    ffn_inner_dim: int
    output_layer: int
    output_layer_norm: bool


def check_speech_encoder_config(
    result: ValidationResult,
    config: SpeechEncoderConfig,
    positive_fields: Sequence[str],
) -> None:
    """Adds to ``result`` the errors any family's config can have: a size that is
    not positive (the shared ones and the family's ``positive_fields``), heads
    that do not divide the width, an ``output_layer`` that is no layer."""
    check_positive_fields(
        result,
        config,
        (
            "model_dim",
            *positive_fields,
            "num_encoder_layers",
            "num_encoder_attn_heads",
            "ffn_inner_dim",
        ),
    )

    check_divisible(result, config, "model_dim", "num_encoder_attn_heads")

    if not 1 <= config.output_layer <= config.num_encoder_layers:
        result.add_error(
            f"`output_layer` is 1-based and must be in [1, {config.num_encoder_layers}] (`num_encoder_layers`), but is {config.output_layer}."
        )


ConfigT = TypeVar("ConfigT", bound=SpeechEncoderConfig)


class SpeechEncoder(Module, ABC, Generic[ConfigT]):
    """A frozen speech encoder that returns the hidden states of one block.

    Subclasses hold the frontend and the ``encoder`` stack (their module names
    are the checkpoint keys) and run the frontend in ``forward``; the blocks are
    run here, never past the layer asked for.
    """

    config: ConfigT
    encoder: TransformerEncoder

    def __init__(self, config: ConfigT) -> None:
        super().__init__()
        self.config = config

    @property
    def model_dim(self) -> int:
        return self.config.model_dim

    @property
    def num_layers(self) -> int:
        return len(self.encoder.layers)

    @property
    @abstractmethod
    def final_layer_norm(self) -> LayerNorm | None:
        """The LayerNorm after the last block, applied on request to any block's output."""

    def output_layer(
        self, layer: int | None = None, layer_norm: bool | None = None
    ) -> tuple[int, bool]:
        """The 1-based block and LayerNorm flag to return: the config's unless given.

        :raises ValueError: on a layer outside ``[1, num_layers]``.
        """
        if layer is None:
            layer = self.config.output_layer

        if layer_norm is None:
            layer_norm = self.config.output_layer_norm

        self._check_layer(layer)

        return layer, layer_norm

    def run_layers(
        self, seqs: Tensor, seqs_layout: BatchLayout, layer: int, layer_norm: bool
    ) -> Tensor:
        """The output of block ``layer`` for frontend outputs, with the final
        LayerNorm if ``layer_norm``."""
        *_, seqs = self.iter_layer_outputs(seqs, seqs_layout, num_layers=layer)

        if layer_norm and self.final_layer_norm is not None:
            seqs = self.final_layer_norm(seqs)

        return seqs

    def iter_layer_outputs(
        self, seqs: Tensor, seqs_layout: BatchLayout, *, num_layers: int
    ) -> Iterator[Tensor]:
        """Run the first ``num_layers`` blocks on frontend outputs, yielding the
        raw output of each (no final LayerNorm).

        fairseq2's encoder layer hooks cannot stop the stack early in 0.8.1, so
        the blocks are driven here directly.
        """
        self._check_layer(num_layers)

        attn_bias_cache = AttentionBiasCache()

        for block in islice(self.encoder.layers, num_layers):
            seqs = block(seqs, seqs_layout, attn_bias_cache)

            yield seqs

    def _check_layer(self, layer: int) -> None:
        if not 1 <= layer <= self.num_layers:
            raise ValueError(
                f"`layer` is 1-based and must be in [1, {self.num_layers}], but is {layer}."
            )


SpeechEncoderT = TypeVar("SpeechEncoderT", bound=SpeechEncoder[Any])


def module_device(module: Module) -> torch.device:
    """The device of ``module``'s first parameter (CPU without parameters)."""
    try:
        return next(module.parameters()).device
    except StopIteration:
        return torch.device("cpu")


class ExtractorOptions(TypedDict, total=False):
    """The settings every family's feature extractor takes (see
    :class:`SpeechEncoderFeatureExtractor`)."""

    layer: int | None
    layer_norm: bool | None
    frame_averaging: int
    dtype: torch.dtype
    device: Device | str | None


class SpeechEncoderFeatureExtractor(ABC, Generic[SpeechEncoderT]):
    """Extracts the hidden states of one encoder layer for a batch of waveforms.

    The encoder is moved to ``device``/``dtype`` and put in eval mode. fp32 is
    the default because it reproduces the reference implementations to ~1e-5;
    bf16 roughly halves memory and time on GPUs but drifts by a few percent, so
    validate it on your data before caching features with it.

    :param layer: 1-based encoder layer; defaults to the model config's.
    :param layer_norm: Apply the encoder's final LayerNorm; defaults to the
        model config's.
    :param frame_averaging: Average this many consecutive frames (2 turns 50 Hz
        into 25 Hz, SpeechMapper's input rate); a trailing remainder is dropped.
    """

    family: ClassVar[str]
    """The model family of the encoder."""

    def __init__(
        self,
        model: SpeechEncoderT,
        *,
        layer: int | None = None,
        layer_norm: bool | None = None,
        frame_averaging: int = 1,
        dtype: torch.dtype = torch.float32,
        device: Device | str | None = None,
    ) -> None:
        self.layer, self.layer_norm = model.output_layer(layer, layer_norm)

        if frame_averaging < 1:
            raise ValueError(
                f"`frame_averaging` must be positive, but is {frame_averaging}."
            )

        self.frame_averaging = frame_averaging
        self.dtype = dtype
        self.device = (
            torch.device(device) if device is not None else module_device(model)
        )

        self.model = model.to(device=self.device, dtype=dtype).eval()

    @property
    @abstractmethod
    def frame_rate(self) -> float:
        """Output frames per second (after frame averaging)."""

    @abstractmethod
    def num_frames(self, num_samples: int) -> int:
        """Output frames of the encoder (before any averaging) for ``num_samples``
        of 16 kHz audio."""

    @abstractmethod
    def min_num_samples_for_frames(self, num_frames: int) -> int:
        """The shortest 16 kHz audio giving at least ``num_frames`` output frames."""

    @property
    def min_num_samples(self) -> int:
        """The shortest 16 kHz waveform that yields one output frame (after
        frame averaging)."""
        return self.min_num_samples_for_frames(self.frame_averaging)

    # `no_grad`, not `inference_mode`: the features may feed a trained
    # projector, and inference tensors cannot be saved for its backward pass.
    @torch.no_grad()
    def __call__(self, waveforms: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """
        :param waveforms: Mono float waveforms at 16 kHz in [-1, 1], any
            lengths. *Shape:* ``[samples]`` each.
        :returns: Features ``[B, T, model_dim]`` in ``dtype`` with zeros past
            each row's length, and the lengths ``[B]`` (int64).
        :raises AudioTooShortError: if a waveform is shorter than
            :attr:`min_num_samples`.
        """
        if not waveforms:
            raise ValueError("`waveforms` must not be empty.")

        seqs, seq_lens = self.encode(waveforms)

        seqs, seq_lens = average_frames(seqs, seq_lens, self.frame_averaging)

        return zero_padding(seqs, seq_lens), seq_lens

    @abstractmethod
    def encode(self, waveforms: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """The encoder frames of a non-empty batch, right-padded, and their
        counts ``[B]`` on :attr:`device` (before frame averaging)."""

    def extract_files(self, sources: Sequence[AudioSource]) -> tuple[Tensor, Tensor]:
        """Decode, downmix and resample audio files (or bytes), then extract."""
        return self([load_audio(source) for source in sources])


def register_speech_encoder_family(
    container: DependencyContainer,
    name: str,
    kls: type[SpeechEncoderT],
    config_kls: type[ConfigT],
    *,
    factory: ModelFactory[ConfigT, SpeechEncoderT],
    state_dict_converter: ModelStateDictConverter[ConfigT],
    select_keys: KeySelector,
    download_manager: Callable[[AssetDownloadManager], AssetDownloadManager]
    | None = None,
) -> None:
    """fairseq2's ``register_model_family`` with two family-scoped changes, so
    that ``load_model`` touches only the encoder of checkpoints that hold a
    whole model (SeamlessM4T-v2 large: 2.3B parameters; Whisper: encoder and
    decoder):

    - a :class:`SpeechEncoderCheckpointLoader` that reads only the tensors
      ``select_keys`` picks, instead of the global checkpoint loader;
    - optionally ``download_manager``, wrapped around the global download
      manager (e.g. to fetch only the shards that hold the encoder).

    ``register_model_family`` offers no way to pass either, and the global
    objects cannot be replaced (singletons) nor preceded (loaders are tried in
    registration order), so the family is wired here with the same
    ``StandardModelFamily``.
    """

    def create_family(resolver: DependencyResolver) -> ModelFamily:
        checkpoint_loader = wire_object(
            resolver,
            SpeechEncoderCheckpointLoader,
            default_loader=resolver.resolve(ModelCheckpointLoader),  # type: ignore[type-abstract]
            select_keys=select_keys,
        )

        wrapped: dict[str, AssetDownloadManager] = {}
        if download_manager is not None:
            wrapped["asset_download_manager"] = download_manager(
                resolver.resolve(AssetDownloadManager)  # type: ignore[type-abstract]
            )

        return wire_object(
            resolver,
            StandardModelFamily,
            name=name,
            kls=kls,
            configs=DependencyLookup(resolver, config_kls),
            factory=factory,
            checkpoint_loader=checkpoint_loader,
            **wrapped,
            supports_meta=True,
            restrict=True,
            state_dict_converter=state_dict_converter,
            shard_specs=None,
            compiler=None,
            fsdp_applier=None,
            layerwise_ac_applier=None,
        )

    # fairseq2 registers abstract interfaces; mypy's type-abstract check does not
    # apply to a DI container.
    container.register(ModelFamily, create_family, key=name)  # type: ignore[type-abstract]
