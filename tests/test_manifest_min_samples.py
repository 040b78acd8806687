"""The manifest check's shortest usable audio against each encoder's own
rule (its extractor's ``min_num_samples``, what extraction skips by): exact
for SeamlessM4T, stricter for Whisper, and what the
:func:`~speechmapper_plugin.data.manifest_validation.default_min_num_samples`
docstring says for the length adaptor."""

from __future__ import annotations

import pytest
import torch
from fairseq2.models import load_model

from speechmapper_plugin.data.manifest_validation import default_min_num_samples
from speechmapper_plugin.models.sfm import create_sfm_extractor


def extractor_min(card: str, frame_averaging: int) -> int:
    model = load_model(card, device=torch.device("cpu"))
    extractor = create_sfm_extractor(model, frame_averaging=frame_averaging)
    return extractor.min_num_samples


@pytest.mark.parametrize("frame_averaging", [1, 2])
def test_exact_for_seamless_m4t(frame_averaging: int) -> None:
    assert default_min_num_samples(frame_averaging) == extractor_min(
        "test_sm4t_hf", frame_averaging
    )


def test_stricter_for_whisper_by_the_documented_margin() -> None:
    assert (default_min_num_samples(2), extractor_min("test_whisper_hf", 2)) == (
        880,
        480,
    )


def test_the_length_adaptor_as_documented() -> None:
    # Exact with the grid's `frame_averaging: 1`; 2:1 averaging needs more.
    assert extractor_min("test_sm4t_hf_adaptor", 1) == default_min_num_samples(1)
    assert (
        extractor_min("test_sm4t_hf_adaptor", 2) == 2_800 > default_min_num_samples(2)
    )
