"""Reads projector checkpoints written by our recipes or by plain ``torch.save``."""

from __future__ import annotations

from typing import Any

from torch.nn.modules.utils import consume_prefix_in_state_dict_if_present

from speechmapper_plugin.models.speechmapper.config import SpeechMapperConfig


def convert_speechmapper_state_dict(
    state_dict: dict[str, Any], config: SpeechMapperConfig
) -> dict[str, Any]:
    """Unwrap ``{"model": state_dict}`` files and DDP's ``module.`` prefix."""
    model_state = state_dict.get("model")
    if isinstance(model_state, dict):
        state_dict = model_state

    state_dict = dict(state_dict)  # the torch helper renames keys in place

    consume_prefix_in_state_dict_if_present(state_dict, prefix="module.")

    return state_dict
