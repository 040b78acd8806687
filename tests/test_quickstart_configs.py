"""The quickstart's extraction and stage-1 configs fit the tiny encoder they
are run with: the layer exists and the projector reads its width."""

from __future__ import annotations

from pathlib import Path

import yaml

from speechmapper_plugin.models.speechmapper import get_speechmapper_model_hub
from speechmapper_plugin.tiny_assets import SM4T_TINY_DIMS

REPO = Path(__file__).resolve().parent.parent


def _config(recipe: str) -> dict[str, object]:
    path = REPO / "recipes" / recipe / "configs" / "quickstart.yaml"
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


def test_quickstart_extraction_layer_exists_in_the_tiny_encoder() -> None:
    features = _config("extract_features")["features"]
    assert isinstance(features, dict)
    assert 1 <= features["layer"] <= SM4T_TINY_DIMS["num_encoder_layers"]


def test_quickstart_projector_reads_the_tiny_encoder_width() -> None:
    model = _config("stage1")["model"]
    assert isinstance(model, dict)
    arch = get_speechmapper_model_hub().get_arch_config(model["arch"])
    assert arch.input_dim == SM4T_TINY_DIMS["model_dim"]
    # The store holds frames averaged as the projector expects.
    features = _config("extract_features")["features"]
    assert isinstance(features, dict)
    assert features["frame_averaging"] == arch.frame_averaging
