"""Registers the ``whisper_encoder`` model family with the fairseq2 runtime.

Like ``sm4t_speech_encoder``: fairseq2's ``StandardModelFamily`` with a
checkpoint loader that reads only the encoder's tensors from safetensors
(``openai/whisper-large-v3``'s ``model.safetensors`` holds encoder and decoder;
the decoder is never materialised).
"""

from __future__ import annotations

from fairseq2.file_system import FileSystem
from fairseq2.gang import GangContext
from fairseq2.model_checkpoint import ModelCheckpointLoader
from fairseq2.models import ModelFamily, StandardModelFamily
from fairseq2.runtime.dependency import (
    DependencyContainer,
    DependencyLookup,
    DependencyResolver,
    wire_object,
)

from speechmapper_plugin.models.encoder_checkpoint import (
    SpeechEncoderCheckpointLoader,
)
from speechmapper_plugin.models.whisper_encoder.config import (
    WHISPER_ENCODER_FAMILY,
    WhisperEncoderConfig,
    register_whisper_encoder_configs,
)
from speechmapper_plugin.models.whisper_encoder.factory import (
    create_whisper_encoder_model,
)
from speechmapper_plugin.models.whisper_encoder.interop import (
    convert_whisper_encoder_state_dict,
    select_whisper_encoder_keys,
)
from speechmapper_plugin.models.whisper_encoder.model import WhisperEncoder


def register_whisper_encoder_family(container: DependencyContainer) -> None:
    """Register the family and its architectures."""

    def create_family(resolver: DependencyResolver) -> ModelFamily:
        checkpoint_loader = SpeechEncoderCheckpointLoader(
            resolver.resolve(ModelCheckpointLoader),  # type: ignore[type-abstract]
            resolver.resolve(FileSystem),  # type: ignore[type-abstract]
            resolver.resolve(GangContext),  # type: ignore[type-abstract]
            select_keys=select_whisper_encoder_keys,
        )

        return wire_object(
            resolver,
            StandardModelFamily,
            name=WHISPER_ENCODER_FAMILY,
            kls=WhisperEncoder,
            configs=DependencyLookup(resolver, WhisperEncoderConfig),
            factory=create_whisper_encoder_model,
            checkpoint_loader=checkpoint_loader,
            supports_meta=True,
            restrict=True,
            state_dict_converter=convert_whisper_encoder_state_dict,
            shard_specs=None,
            compiler=None,
            fsdp_applier=None,
            layerwise_ac_applier=None,
        )

    container.register(ModelFamily, create_family, key=WHISPER_ENCODER_FAMILY)  # type: ignore[type-abstract]

    register_whisper_encoder_configs(container)
