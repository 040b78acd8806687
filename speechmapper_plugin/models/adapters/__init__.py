"""The adapter families of Verdini et al. 2024 (``speech_adapter``): Base,
strided convolution, window-level Q-Former, Q-Former, CIF and CTC compression."""

from __future__ import annotations

from speechmapper_plugin.models.adapters.any_projector import (
    PROJECTOR_CLASSES as PROJECTOR_CLASSES,
)
from speechmapper_plugin.models.adapters.any_projector import (
    PROJECTOR_CONFIG_CLASSES as PROJECTOR_CONFIG_CLASSES,
)
from speechmapper_plugin.models.adapters.any_projector import (
    AnyProjector as AnyProjector,
)
from speechmapper_plugin.models.adapters.any_projector import (
    ProjectorConfig as ProjectorConfig,
)
from speechmapper_plugin.models.adapters.any_projector import (
    is_projector as is_projector,
)
from speechmapper_plugin.models.adapters.any_projector import (
    projector_family as projector_family,
)
from speechmapper_plugin.models.adapters.aux import AdapterAux as AdapterAux
from speechmapper_plugin.models.adapters.aux import (
    AlignmentTargets as AlignmentTargets,
)
from speechmapper_plugin.models.adapters.cif import (
    integrate_and_fire as integrate_and_fire,
)
from speechmapper_plugin.models.adapters.config import (
    SPEECH_ADAPTER_FAMILY as SPEECH_ADAPTER_FAMILY,
)
from speechmapper_plugin.models.adapters.config import AdapterConfig as AdapterConfig
from speechmapper_plugin.models.adapters.config import (
    register_speech_adapter_configs as register_speech_adapter_configs,
)
from speechmapper_plugin.models.adapters.ctc import forced_align as forced_align
from speechmapper_plugin.models.adapters.factory import (
    create_speech_adapter_model as create_speech_adapter_model,
)
from speechmapper_plugin.models.adapters.fsdp import (
    apply_fsdp_to_speech_adapter as apply_fsdp_to_speech_adapter,
)
from speechmapper_plugin.models.adapters.hub import (
    get_speech_adapter_model_hub as get_speech_adapter_model_hub,
)
from speechmapper_plugin.models.adapters.interop import (
    convert_speech_adapter_state_dict as convert_speech_adapter_state_dict,
)
from speechmapper_plugin.models.adapters.kinds import (
    ADAPTER_KIND_REGISTRY as ADAPTER_KIND_REGISTRY,
)
from speechmapper_plugin.models.adapters.kinds import (
    ADAPTER_KINDS as ADAPTER_KINDS,
)
from speechmapper_plugin.models.adapters.kinds import AdapterKind as AdapterKind
from speechmapper_plugin.models.adapters.kinds import adapter_kind as adapter_kind
from speechmapper_plugin.models.adapters.model import SpeechAdapter as SpeechAdapter
from speechmapper_plugin.models.adapters.model import (
    VariableLengthError as VariableLengthError,
)
