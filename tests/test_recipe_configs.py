"""Every shipped recipe config loads into its recipe's config class and validates."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fairseq2.runtime.dependency import get_dependency_resolver
from fairseq2.utils.structured import ValueConverter
from fairseq2.utils.validation import StandardObjectValidator

from recipes.eet.recipe import EETRecipe
from recipes.evaluate.recipe import evaluate_recipe
from recipes.extract_features.recipe import ExtractFeaturesRecipe
from recipes.generation import GenerationRecipe
from recipes.stage1.recipe import Stage1Recipe
from recipes.stage2.recipe import Stage2Recipe

REPO = Path(__file__).resolve().parent.parent

RECIPES = {
    "extract_features": ExtractFeaturesRecipe(),
    "stage1": Stage1Recipe(),
    "stage2": Stage2Recipe(),
    "generate": GenerationRecipe(),
    "eet": EETRecipe(),
    "evaluate": evaluate_recipe(),
}

CONFIGS = sorted(REPO.glob("recipes/*/configs/*.yaml"))

# What the documented command lines add to the shipped configs.
COMMAND_LINE = {
    "extract_features": {
        "dataset": {"config_overrides": {"manifests": {"train": "/data/train.tsv"}}}
    },
    "generate": {"input": {"manifest": "/data/test.tsv"}},
    "evaluate": {"input": {"manifest": "/data/test.tsv"}},
    "eet": {"input": {"text_file": "/data/sentences.txt"}},
}


def merge(base: object, update: object) -> object:
    if isinstance(base, dict) and isinstance(update, dict):
        merged = dict(base)
        for key, value in update.items():
            merged[key] = merge(base.get(key), value) if key in base else value
        return merged
    return update


def load_config(path: Path, kls: type) -> object:
    """As fairseq2's CLI does: the recipe defaults, then the file on top."""
    converter = get_dependency_resolver().resolve(ValueConverter)
    defaults = converter.unstructure(kls())
    data = merge(defaults, yaml.safe_load(path.read_text()))
    data = merge(data, COMMAND_LINE.get(path.parent.parent.name, {}))
    return converter.structure(data, kls)


def test_every_recipe_ships_configs() -> None:
    assert {p.parent.parent.name for p in CONFIGS} == set(RECIPES)


@pytest.mark.parametrize(
    "path", CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_config_structures_and_validates(path: Path) -> None:
    recipe = RECIPES[path.parent.parent.name]
    config = load_config(path, recipe.config_kls)
    StandardObjectValidator().validate(config)


def test_paper_configs_match_the_paper() -> None:
    from recipes.stage1.config import Stage1Config
    from recipes.stage2.config import Stage2Config

    def load(path: str, kls: type) -> object:
        return load_config(REPO / path, kls)

    for llm, card in (
        ("llama3_1_8b", "speechmapper_llama3_1_8b_instruct"),
        ("eurollm_9b", "speechmapper_eurollm_9b_instruct"),
    ):
        s1 = load(f"recipes/stage1/configs/paper_{llm}.yaml", Stage1Config)
        assert isinstance(s1, Stage1Config)
        assert s1.model.arch == "paper" and s1.target_llm.name == card
        assert s1.regime.num_steps == 2_000_000 and s1.loss.alpha == 9.0
        # The pad target is the card's pad token, refused if its row is zero.
        assert s1.target_llm.pad_token is None
        assert not s1.target_llm.allow_weak_pad_row

    agnostic = load("recipes/stage2/configs/task_agnostic.yaml", Stage2Config)
    assert isinstance(agnostic, Stage2Config) and agnostic.loss.sigma == 0.9
    assert agnostic.regime.num_steps == 1000
    for task in ("st", "sqa"):
        specific = load(
            f"recipes/stage2/configs/task_specific_{task}.yaml", Stage2Config
        )
        assert isinstance(specific, Stage2Config) and specific.loss.sigma == 0.5


@pytest.mark.parametrize("recipe", ["generate", "evaluate"])
def test_paper_inference_configs_decode_as_the_paper_without_the_guard(
    recipe: str,
) -> None:
    """The paper decodes greedily with no loop stopping: its configs switch
    the repetition guard off, which the tiny configs (and the config class)
    leave on."""
    kls = RECIPES[recipe].config_kls

    paper = load_config(REPO / f"recipes/{recipe}/configs/llama3_1_8b.yaml", kls)
    assert paper.generation.beam_size == 1  # type: ignore[attr-defined]
    assert paper.generation.generator == "beam_search"  # type: ignore[attr-defined]
    assert not paper.generation.repetition_guard.enabled  # type: ignore[attr-defined]

    # Control: the default the paper configs override.
    tiny = load_config(REPO / f"recipes/{recipe}/configs/tiny.yaml", kls)
    assert tiny.generation.repetition_guard.enabled  # type: ignore[attr-defined]


def test_out_of_range_loss_weights_are_rejected() -> None:
    from fairseq2.utils.validation import ValidationError

    from recipes.stage1.config import Stage1LossSection
    from recipes.stage2.config import Stage2LossSection

    with pytest.raises(ValidationError, match="alpha"):
        StandardObjectValidator().validate(Stage1LossSection(alpha=11.0))
    with pytest.raises(ValidationError, match="sigma"):
        StandardObjectValidator().validate(Stage2LossSection(sigma=1.2))


@pytest.mark.parametrize("llm", ["llama3_1_8b", "eurollm_9b"])
def test_paper_stage1_batch_follows_from_the_papers_budget(llm: str) -> None:
    """The header's arithmetic, redone here: 2M steps in 4 days on 4 GPUs."""
    from recipes.stage1.config import Stage1Config

    path = REPO / f"recipes/stage1/configs/paper_{llm}.yaml"
    config = load_config(path, Stage1Config)
    assert isinstance(config, Stage1Config)
    header = path.read_text().split("\nmodel:")[0]

    frames = config.dataset.max_num_frames
    seconds_per_step = 4 * 24 * 3600 / config.regime.num_steps
    gflop_per_frame, sustained_tflops = 0.51, 25.0
    affordable = sustained_tflops * 1e12 * seconds_per_step / (gflop_per_frame * 1e9)
    hours_seen = config.regime.num_steps * 4 * frames / 25 / 3600

    assert frames <= affordable < 1.1 * frames + 1000
    assert f"max_num_frames: {frames:,}".replace(",", "") in header.replace(",", "")
    assert f"{round(hours_seen / 1000)}k hours" in header
    for fact in (
        "345,600 s",
        "0.51 GFLOP",
        "25 TFLOP/s",
        "trainer.mixed_precision.dtype=float16",
    ):
        assert fact in header

    # Paper-faithful text targets; the tiny configs keep the transcripts as given.
    assert config.target_llm.transcript_normalization == "sentence_case"
    tiny = load_config(REPO / "recipes/stage1/configs/tiny.yaml", Stage1Config)
    assert isinstance(tiny, Stage1Config)
    assert tiny.target_llm.transcript_normalization == "as_given"


def test_paper_stage1_config_validates_with_fp16_for_v100() -> None:
    import torch

    from recipes.stage1.config import Stage1Config

    path = REPO / "recipes/stage1/configs/paper_llama3_1_8b.yaml"
    converter = get_dependency_resolver().resolve(ValueConverter)
    data = merge(
        converter.unstructure(Stage1Config()), yaml.safe_load(path.read_text())
    )
    data = merge(data, {"trainer": {"mixed_precision": {"dtype": "float16"}}})
    config = converter.structure(data, Stage1Config)
    StandardObjectValidator().validate(config)

    assert config.trainer.mixed_precision.dtype == torch.float16
    assert config.trainer.fp16_loss_scale[0] > 1.0  # dynamic scaling starts high


def test_no_config_attributes_an_unsourced_sweep_to_the_paper() -> None:
    for path in CONFIGS:
        text = path.read_text()
        assert "paper's sweep" not in text, path
        assert "paper's sigma grid" not in text, path
