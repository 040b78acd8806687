"""Registers every component of the plugin with the fairseq2 runtime."""

from __future__ import annotations

from fairseq2.composition import (
    register_dataset_family,
    register_model_family,
    register_package_assets,
)
from fairseq2.runtime.dependency import DependencyContainer

from speechmapper_plugin.datasets.audio_manifest import (
    AUDIO_MANIFEST_DATASET,
    AudioManifestDataset,
    AudioManifestDatasetConfig,
    open_audio_manifest_dataset,
)
from speechmapper_plugin.datasets.instructions import (
    INSTRUCTION_DATASET,
    InstructionDataset,
    InstructionDatasetConfig,
    open_instruction_dataset,
)
from speechmapper_plugin.datasets.speech_features import (
    SPEECH_FEATURES_DATASET,
    SpeechFeaturesDataset,
    SpeechFeaturesDatasetConfig,
    open_speech_features_dataset,
)
from speechmapper_plugin.llm.archs import register_target_llm_configs
from speechmapper_plugin.metrics.descriptors import register_metric_descriptors
from speechmapper_plugin.models.adapters import (
    SPEECH_ADAPTER_FAMILY,
    AdapterConfig,
    SpeechAdapter,
    apply_fsdp_to_speech_adapter,
    convert_speech_adapter_state_dict,
    create_speech_adapter_model,
    register_speech_adapter_configs,
)
from speechmapper_plugin.models.sm4t_speech_encoder import (
    register_sm4t_speech_encoder_family,
)
from speechmapper_plugin.models.speechmapper import (
    SPEECHMAPPER_FAMILY,
    SpeechMapperConfig,
    SpeechMapperProjector,
    apply_fsdp_to_speechmapper,
    convert_speechmapper_state_dict,
    create_speechmapper_model,
    register_speechmapper_configs,
)
from speechmapper_plugin.models.whisper_encoder import (
    register_whisper_encoder_family,
)


def setup_fairseq2_extension(container: DependencyContainer) -> None:
    """The ``fairseq2.extension`` entry point (see ``pyproject.toml``)."""
    register_model_family(
        container,
        SPEECHMAPPER_FAMILY,
        kls=SpeechMapperProjector,
        config_kls=SpeechMapperConfig,
        factory=create_speechmapper_model,
        state_dict_converter=convert_speechmapper_state_dict,
        fsdp_applier=apply_fsdp_to_speechmapper,
    )
    register_speechmapper_configs(container)

    # The adapter families of Verdini et al. (one family, `kind` per arch).
    register_model_family(
        container,
        SPEECH_ADAPTER_FAMILY,
        kls=SpeechAdapter,
        config_kls=AdapterConfig,
        factory=create_speech_adapter_model,
        state_dict_converter=convert_speech_adapter_state_dict,
        fsdp_applier=apply_fsdp_to_speech_adapter,
    )
    register_speech_adapter_configs(container)

    # Wired like `register_model_family`, but with a checkpoint loader that
    # reads only the speech-encoder tensors of SeamlessM4T checkpoints.
    register_sm4t_speech_encoder_family(container)

    # The same, for Whisper checkpoints (encoder tensors only).
    register_whisper_encoder_family(container)

    # Target LLMs use fairseq2's own families; we add the archs it lacks (EuroLLM).
    register_target_llm_configs(container)

    register_dataset_family(
        container,
        AUDIO_MANIFEST_DATASET,
        AudioManifestDataset,
        AudioManifestDatasetConfig,
        opener=open_audio_manifest_dataset,
    )
    register_dataset_family(
        container,
        SPEECH_FEATURES_DATASET,
        SpeechFeaturesDataset,
        SpeechFeaturesDatasetConfig,
        opener=open_speech_features_dataset,
    )
    register_dataset_family(
        container,
        INSTRUCTION_DATASET,
        InstructionDataset,
        InstructionDatasetConfig,
        opener=open_instruction_dataset,
    )

    register_metric_descriptors(container)

    register_package_assets(container, "speechmapper_plugin.assets")
