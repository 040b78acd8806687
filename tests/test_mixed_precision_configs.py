"""fairseq2 0.8.1 honours ``trainer.mixed_precision.mode: static`` only under
FSDP on several ranks; under DDP it warns and falls back to autocast. A config
that pins DDP must say what it runs (``auto``), not ask for what it never gets."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

STAGE_CONFIGS = sorted(REPO.glob("recipes/stage[12]/configs/*.yaml"))


@pytest.mark.parametrize(
    "path", STAGE_CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.name}"
)
def test_a_ddp_config_does_not_ask_for_static_mixed_precision(path: Path) -> None:
    trainer = (yaml.safe_load(path.read_text()) or {}).get("trainer") or {}
    mode = (trainer.get("mixed_precision") or {}).get("mode")
    if trainer.get("data_parallelism") == "ddp":
        assert mode != "static", f"{path}: use `mode: auto` under DDP"


def test_the_paper_stage1_configs_run_bf16_autocast() -> None:
    for name in ("paper_llama3_1_8b", "paper_eurollm_9b"):
        text = (REPO / f"recipes/stage1/configs/{name}.yaml").read_text()
        trainer = yaml.safe_load(text)["trainer"]
        assert trainer["mixed_precision"] == {"mode": "auto", "dtype": "bfloat16"}
