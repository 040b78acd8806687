"""Stage 2 refuses MSE targets other than the stage-1 run's."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from fairseq2.recipe.error import RecipeError

from recipes.common import TranscriptTargetsSection
from recipes.stage2.recipe import check_stage1_targets

REPO = Path(__file__).resolve().parent.parent

STAGE1_TARGETS = {
    "name": "speechmapper_llama3_1_8b_instruct",
    "pad_token": None,
    "transcript_normalization": "sentence_case",
    "add_bos": False,
    "add_eos": True,
}


def write_stage1_config(tmp_path: Path, target_llm: object) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"target_llm": target_llm}), encoding="utf-8")
    return path


def test_other_targets_than_stage1s_are_refused(tmp_path: Path) -> None:
    path = write_stage1_config(tmp_path, STAGE1_TARGETS)

    with pytest.raises(RecipeError) as info:
        check_stage1_targets(path, TranscriptTargetsSection())
    message = str(info.value)
    assert "`target_llm.transcript_normalization: sentence_case`" in message
    assert "`target_llm.add_eos: True` (this run: False)" in message
    assert "pad_token" not in message and "add_bos" not in message

    check_stage1_targets(
        path,
        TranscriptTargetsSection(
            transcript_normalization="sentence_case", add_eos=True
        ),
    )


def test_nothing_to_compare_with(tmp_path: Path) -> None:
    # No stage-1 config (e.g. a projector from an exported card), or a config
    # without a `target_llm` section: nothing to check.
    check_stage1_targets(tmp_path / "config.yaml", TranscriptTargetsSection())
    path = write_stage1_config(tmp_path, None)
    check_stage1_targets(path, TranscriptTargetsSection(add_eos=True))


@pytest.mark.parametrize(
    "stage2", ["task_agnostic", "task_specific_st", "task_specific_sqa"]
)
@pytest.mark.parametrize("stage1", ["paper_llama3_1_8b", "paper_eurollm_9b"])
def test_paper_stage2_configs_have_the_paper_stage1_targets(
    stage1: str, stage2: str
) -> None:
    from recipes.stage1.config import Stage1Config
    from recipes.stage2.config import Stage2Config
    from tests.test_recipe_configs import load_config

    s1 = load_config(REPO / f"recipes/stage1/configs/{stage1}.yaml", Stage1Config)
    s2 = load_config(REPO / f"recipes/stage2/configs/{stage2}.yaml", Stage2Config)
    assert isinstance(s1, Stage1Config) and isinstance(s2, Stage2Config)

    for f in fields(TranscriptTargetsSection):
        assert getattr(s2.target_llm, f.name) == getattr(s1.target_llm, f.name), f.name
    assert s2.target_llm.transcript_normalization == "sentence_case"
