"""The SpeechMapper projector model family (``speechmapper``)."""

from __future__ import annotations

from speechmapper_plugin.models.projector_base import (
    ProjectorInputTooShortError as ProjectorInputTooShortError,
)
from speechmapper_plugin.models.speechmapper.config import (
    SPEECHMAPPER_FAMILY as SPEECHMAPPER_FAMILY,
)
from speechmapper_plugin.models.speechmapper.config import (
    ProjectorBlockConfig as ProjectorBlockConfig,
)
from speechmapper_plugin.models.speechmapper.config import (
    SpeechMapperConfig as SpeechMapperConfig,
)
from speechmapper_plugin.models.speechmapper.config import (
    check_llm_embedding_dim as check_llm_embedding_dim,
)
from speechmapper_plugin.models.speechmapper.config import (
    register_speechmapper_configs as register_speechmapper_configs,
)
from speechmapper_plugin.models.speechmapper.factory import (
    create_speechmapper_model as create_speechmapper_model,
)
from speechmapper_plugin.models.speechmapper.fsdp import (
    apply_fsdp_to_speechmapper as apply_fsdp_to_speechmapper,
)
from speechmapper_plugin.models.speechmapper.hub import (
    get_speechmapper_model_hub as get_speechmapper_model_hub,
)
from speechmapper_plugin.models.speechmapper.interop import (
    convert_speechmapper_state_dict as convert_speechmapper_state_dict,
)
from speechmapper_plugin.models.speechmapper.model import (
    SpeechMapperProjector as SpeechMapperProjector,
)
