"""Warm-starting a projector from one trained for another LLM (issue 22)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from speechmapper_plugin.export.projector import export_projector
from speechmapper_plugin.models.projector_base import SpeechFeaturesConfig
from speechmapper_plugin.models.speechmapper import (
    ProjectorBlockConfig,
    SpeechMapperConfig,
    SpeechMapperProjector,
    create_speechmapper_model,
)
from speechmapper_plugin.models.warm_start import (
    LoadedFreeze,
    load_fitting_tensors,
    read_warm_start_source,
)

FEATURES = SpeechFeaturesConfig(encoder="synthetic", layer=1, layer_norm=True)


def tiny_config(output_dim: int, **kwargs: object) -> SpeechMapperConfig:
    block = ProjectorBlockConfig(
        model_dim=32, output_dim=32, num_layers=1, num_attn_heads=4, ffn_inner_dim=64
    )
    return SpeechMapperConfig(
        input_dim=16,
        blocks=[block, replace(block)],
        output_dim=output_dim,
        dropout_p=0.0,
        **kwargs,  # type: ignore[arg-type]
    )


def seeded(config: SpeechMapperConfig, seed: int) -> SpeechMapperProjector:
    torch.manual_seed(seed)
    return create_speechmapper_model(config)


@pytest.fixture
def source_export(tmp_path: Path) -> tuple[Path, SpeechMapperProjector]:
    """A "trained" 64-d projector for ``test_llama``, exported."""
    config = tiny_config(64, target_llm="test_llama", speech_features=FEATURES)
    source = seeded(config, 11)
    with torch.no_grad():  # "trained": no tensor left at its init
        for param in source.parameters():
            param.add_(0.1 * torch.randn_like(param))
    export_projector(source, tmp_path / "export", name="src")
    return tmp_path / "export", source


def test_fitting_tensors_are_the_sources_and_the_output_layer_is_a_fresh_init(
    source_export: tuple[Path, SpeechMapperProjector],
) -> None:
    path, source_model = source_export
    source = read_warm_start_source(path)
    assert source.target_llm == "test_llama"
    assert source.speech_features == FEATURES

    # A 48-d LLM: the final projection changes shape, nothing else does.
    config = tiny_config(48)
    model = seeded(config, 5)
    report = load_fitting_tensors(model, source.state)

    assert set(report.fresh) == {"final_proj.weight", "final_proj.bias"}
    assert (
        "shape (64, 32) in the source, (48, 32) here"
        in report.fresh["final_proj.weight"]
    )
    assert report.unused == []

    theirs = source_model.state_dict()
    control = seeded(config, 5).state_dict()  # the same seed, no warm start
    for name, tensor in model.state_dict().items():
        if name.startswith("final_proj."):
            assert torch.equal(tensor, control[name]), name
        else:
            assert name in report.loaded
            assert torch.equal(tensor, theirs[name]), name
            # Loading changed it: the control's init is not the source's.
            assert not torch.equal(tensor, control[name]), name


def test_keep_fresh_leaves_matching_tensors_at_their_init(
    source_export: tuple[Path, SpeechMapperProjector],
) -> None:
    source = read_warm_start_source(source_export[0])
    config = tiny_config(48)
    model = seeded(config, 5)
    report = load_fitting_tensors(model, source.state, keep_fresh=[r"blocks\.1\."])

    control = seeded(config, 5).state_dict()
    theirs = source_export[1].state_dict()
    kept = [n for n in control if n.startswith("blocks.1.")]
    assert kept and all(
        report.fresh[n] == "kept fresh by 'blocks\\.1\\.'" for n in kept
    )
    for name, tensor in model.state_dict().items():
        if name in kept or name.startswith("final_proj."):
            assert torch.equal(tensor, control[name]), name
        else:
            assert torch.equal(tensor, theirs[name]), name
    assert len(report.loaded) == len(control) - len(kept) - 2

    with pytest.raises(ValueError, match="matches no tensor"):
        load_fitting_tensors(seeded(config, 5), source.state, keep_fresh=["block\\.1"])


def test_warm_start_section_refuses_bad_keep_fresh() -> None:
    from recipes.stage1.config import WarmStartSection

    assert (
        not WarmStartSection(checkpoint=Path("src"), keep_fresh=["blocks\\.1\\."])
        .validate()
        .has_error()
    )
    errors = str(WarmStartSection(checkpoint=Path("src"), keep_fresh=["("]).validate())
    assert "not a regular expression" in errors
    errors = str(WarmStartSection(keep_fresh=["blocks"]).validate())
    assert "`warm_start.checkpoint` is not set" in errors


def test_no_fitting_tensor_is_an_error(
    source_export: tuple[Path, SpeechMapperProjector],
) -> None:
    source = read_warm_start_source(source_export[0])
    with pytest.raises(ValueError, match="another architecture"):
        load_fitting_tensors(torch.nn.Linear(3, 3), source.state)


def test_a_source_on_other_features_is_named(
    source_export: tuple[Path, SpeechMapperProjector],
) -> None:
    source = read_warm_start_source(source_export[0])
    same = tiny_config(48, speech_features=FEATURES)
    assert source.feature_problems(same) == []
    other = tiny_config(
        48, speech_features=replace(FEATURES, layer=2), frame_averaging=1
    )
    problems = source.feature_problems(other)
    assert problems == ["frame_averaging 1 (source: 2)", "layer 2 (trained on layer 1)"]


def test_not_a_checkpoint_is_an_actionable_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="holds no projector checkpoint"):
        read_warm_start_source(tmp_path)
    with pytest.raises(ValueError, match="is not a directory"):
        read_warm_start_source(tmp_path / "missing")


def test_run_checkpoint_directory_last_step(tmp_path: Path) -> None:
    """A recipe's layout: ``checkpoints/model.yaml`` and ``step_N/model/...``."""
    config = tiny_config(64, target_llm="test_llama")
    checkpoints = tmp_path / "run/checkpoints"
    states = {}
    for step in (5, 10):
        model = seeded(config, step)
        states[step] = model.state_dict()
        file = checkpoints / f"step_{step}/model/pp_00/tp_00/sdp_00.pt"
        file.parent.mkdir(parents=True)
        torch.save(states[step], file)
    (checkpoints / "model.yaml").write_text(
        "name: checkpoint\nmodel_family: speechmapper\n"
        "model_config: {target_llm: test_llama, input_dim: 16}\n"
    )

    for path, step in [
        (tmp_path / "run", 10),
        (checkpoints, 10),
        (checkpoints / "step_5", 5),
    ]:
        source = read_warm_start_source(path)
        assert source.step == step and source.target_llm == "test_llama"
        assert all(torch.equal(v, source.state[k]) for k, v in states[step].items())


def _train(
    model: torch.nn.Module, freeze: LoadedFreeze | None, steps: int, name: str
) -> list[torch.Tensor]:
    """AdamW with weight decay (which moves even zero-gradient parameters);
    returns ``name``'s value entering each step, and after the last."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    param = dict(model.named_parameters())[name]
    seen = []
    torch.manual_seed(0)
    for step in range(1, steps + 1):
        if freeze is not None:
            freeze.set_step(step)
        seen.append(param.detach().clone())
        model(torch.randn(4, 8)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seen.append(param.detach().clone())
    return seen


def test_loaded_freeze_holds_the_loaded_part_for_its_steps() -> None:
    def net() -> torch.nn.Sequential:
        torch.manual_seed(3)
        return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 2))

    start = net().state_dict()

    # Control: without the freeze, the first layer moves at the first step.
    control = _train(net(), None, 1, "0.weight")
    assert not torch.equal(control[1], start["0.weight"])

    model = net()
    freeze = LoadedFreeze(model, ["0.weight", "0.bias"], num_steps=3)
    assert freeze.num_parameters == 8 * 8 + 8
    seen = _train(model, freeze, 5, "0.weight")
    # Steps 1-3 run on the loaded values, and so does step 4 (the weight
    # decay of step 3 is undone at its start); step 4 trains them.
    for step in (1, 2, 3, 4):
        assert torch.equal(seen[step - 1], start["0.weight"]), step
    assert not torch.equal(seen[4], start["0.weight"])
    assert not torch.equal(seen[5], seen[4])
    # The fresh layer trained all along.
    assert not torch.equal(model.state_dict()["1.weight"], start["1.weight"])


def test_retarget_table_steps_to_the_from_scratch_final_value() -> None:
    from speechmapper_plugin.quickstart.retarget import compare, format_table

    def records(values: dict[int, float]) -> list[dict[str, object]]:
        return [{"Step": s, "mse_word": v} for s, v in values.items()]

    result = compare(
        {
            "scratch": records({0: 1.0, 40: 0.6, 80: 0.5}),
            "retargeted": records({0: 0.8, 40: 0.45, 80: 0.4}),
        }
    )
    assert result["target_mse_word"] == 0.5
    assert result["steps_to_target"] == {"scratch": 80, "retargeted": 40}
    assert result["mse_word"][1] == {"step": 40, "scratch": 0.6, "retargeted": 0.45}
    table = format_table(result)
    assert "from scratch 80, retargeted 40" in table
    assert "| 40 | 0.6000 | 0.4500 |" in table

    # A run that never gets there.
    never = compare(
        {
            "scratch": records({0: 1.0, 40: 0.5}),
            "retargeted": records({0: 0.9, 40: 0.7}),
        }
    )
    assert never["steps_to_target"]["retargeted"] is None


def test_retarget_needs_a_finished_quickstart_stage1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from speechmapper_plugin.quickstart.retarget import main

    assert main([str(tmp_path), "--small"]) == 1
    assert "holds no finished quickstart stage 1" in capsys.readouterr().err


def test_retarget_variant_result_has_dev_and_task_times(tmp_path: Path) -> None:
    from speechmapper_plugin.quickstart.retarget import (
        compare,
        format_result,
        parse_options,
        task_seconds,
    )

    options = parse_options(
        [str(tmp_path), "--variant", "kf", "--keep-fresh", r"blocks\.1\."]
    )
    assert options.variant == "kf" and options.keep_fresh == (r"blocks\.1\.",)
    with pytest.raises(SystemExit):
        parse_options([str(tmp_path), "--variant", "scratch"])

    logs = tmp_path / "run/logs"
    logs.mkdir(parents=True)
    (logs / "rank_0.log").write_text(
        "[Rank 0] ... INFO fairseq2 - Task finished in 93 second(s) after 3000 step(s)!\n"
    )
    assert task_seconds(tmp_path / "run") == 93
    assert task_seconds(tmp_path) is None

    def records(values: dict[int, float]) -> list[dict[str, object]]:
        return [{"Step": s, "mse_word": v} for s, v in values.items()]

    curves = {
        "scratch": records({0: 1.0, 10: 0.5}),
        "retargeted": records({0: 0.9, 10: 0.4}),
    }
    text = format_result(
        {
            "test": compare(curves),
            "dev": compare(curves, "dev"),
            "task_seconds": {"scratch": 93, "retargeted": 90},
        }
    )
    assert "(test voice)" in text and "(dev voice)" in text
    assert "from scratch 93 s, retargeted 90 s" in text


def test_another_seed_runs_in_its_own_directory_and_shares_the_second_llm(
    tmp_path: Path,
) -> None:
    from speechmapper_plugin.quickstart.layout import QuickstartLayout
    from speechmapper_plugin.quickstart.retarget import parse_options, run_dirs

    layout = QuickstartLayout(tmp_path)
    seed0 = run_dirs(layout, parse_options([str(tmp_path)]))
    seed1 = run_dirs(layout, parse_options([str(tmp_path), "--seed", "1"]))
    assert seed0 == {
        "scratch": tmp_path / "retarget" / "stage1_scratch",
        "retargeted": tmp_path / "retarget" / "stage1_retargeted",
    }
    assert seed1 == {
        "scratch": tmp_path / "retarget" / "seed1" / "stage1_scratch",
        "retargeted": tmp_path / "retarget" / "seed1" / "stage1_retargeted",
    }


def test_a_run_made_with_other_options_is_not_reused(tmp_path: Path) -> None:
    from speechmapper_plugin.quickstart.layout import QuickstartError, claim_options
    from speechmapper_plugin.quickstart.retarget import parse_options, run_options

    record = tmp_path / "stage1_scratch.options.json"
    outputs = tmp_path / "stage1_scratch"
    first = run_options(parse_options([str(tmp_path), "--small"]), "scratch")

    def claim(options: dict[str, object], out: Path = outputs) -> None:
        claim_options(record, options, what="The run", remedy="fix it", outputs=out)

    claim(first)
    outputs.mkdir()
    claim(first)  # the same options: its outputs are reused

    longer = run_options(
        parse_options([str(tmp_path), "--small", "--stage1-steps", "800"]), "scratch"
    )
    with pytest.raises(
        QuickstartError, match=r"other options \(stage1_steps 400, now 800\); fix it"
    ):
        claim(longer)

    # A variant differs from the control in its warm-start options too.
    options = parse_options([str(tmp_path), "--keep-fresh", "x"])
    assert run_options(options, "retargeted")["keep_fresh"] == ["x"]
    assert "keep_fresh" not in run_options(options, "scratch")

    # Outputs an older version made, without a record, are not adopted.
    record.unlink()
    with pytest.raises(QuickstartError, match="no record of the options"):
        claim(first)
