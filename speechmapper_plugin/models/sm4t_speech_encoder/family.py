"""Registers the ``sm4t_speech_encoder`` model family with the fairseq2 runtime.

This is fairseq2's ``register_model_family`` with two family-scoped changes,
so that ``load_model`` touches only the speech encoder of the multi-gigabyte
SeamlessM4T checkpoints:

- a :class:`SpeechEncoderCheckpointLoader` instead of the global checkpoint
  loader (reads only speech-encoder tensors);
- a :class:`SpeechEncoderDownloadManager` around the global download manager
  (fetches only the safetensors shards that hold the speech encoder).

``register_model_family`` offers no way to pass either, and the global
objects cannot be replaced (singletons) nor preceded (loaders are tried in
registration order), so the family is wired here with the same
``StandardModelFamily``.
"""

from __future__ import annotations

from fairseq2.assets import AssetDownloadManager
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
from speechmapper_plugin.models.sm4t_speech_encoder.config import (
    SM4T_SPEECH_ENCODER_FAMILY,
    SM4TSpeechEncoderConfig,
    register_sm4t_speech_encoder_configs,
)
from speechmapper_plugin.models.sm4t_speech_encoder.download import (
    SpeechEncoderDownloadManager,
)
from speechmapper_plugin.models.sm4t_speech_encoder.factory import (
    create_sm4t_speech_encoder_model,
)
from speechmapper_plugin.models.sm4t_speech_encoder.interop import (
    convert_sm4t_speech_encoder_state_dict,
    select_speech_encoder_keys,
)
from speechmapper_plugin.models.sm4t_speech_encoder.model import SM4TSpeechEncoder


def register_sm4t_speech_encoder_family(container: DependencyContainer) -> None:
    """Register the family and its ``large`` and ``tiny`` architectures."""

    def create_family(resolver: DependencyResolver) -> ModelFamily:
        checkpoint_loader = wire_object(
            resolver,
            SpeechEncoderCheckpointLoader,
            default_loader=resolver.resolve(ModelCheckpointLoader),  # type: ignore[type-abstract]
            select_keys=select_speech_encoder_keys,
        )

        download_manager = SpeechEncoderDownloadManager(
            resolver.resolve(AssetDownloadManager)  # type: ignore[type-abstract]
        )

        return wire_object(
            resolver,
            StandardModelFamily,
            name=SM4T_SPEECH_ENCODER_FAMILY,
            kls=SM4TSpeechEncoder,
            configs=DependencyLookup(resolver, SM4TSpeechEncoderConfig),
            factory=create_sm4t_speech_encoder_model,
            checkpoint_loader=checkpoint_loader,
            asset_download_manager=download_manager,
            supports_meta=True,
            restrict=True,
            state_dict_converter=convert_sm4t_speech_encoder_state_dict,
            shard_specs=None,
            compiler=None,
            fsdp_applier=None,
            layerwise_ac_applier=None,
        )

    # fairseq2 registers abstract interfaces; mypy's type-abstract check does not
    # apply to a DI container.
    container.register(ModelFamily, create_family, key=SM4T_SPEECH_ENCODER_FAMILY)  # type: ignore[type-abstract]

    register_sm4t_speech_encoder_configs(container)
