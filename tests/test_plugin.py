"""The plugin as fairseq2 sees it: discovery, archs, cards, packaging."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from fairseq2.models import load_model

from speechmapper_plugin.models.speechmapper import SpeechMapperProjector
from tests.support.cards import SessionCards

DISCOVERY_SCRIPT = """
import json, torch
from fairseq2 import init_fairseq2
init_fairseq2()
from fairseq2.models import ModelHubAccessor
from speechmapper_plugin.models.speechmapper import SpeechMapperConfig, SpeechMapperProjector
hub = ModelHubAccessor("speechmapper", kls=SpeechMapperProjector, config_kls=SpeechMapperConfig)()
paper = hub.create_new_model(hub.get_arch_config("paper"), device=torch.device("cpu"), meta=True)
tiny = hub.create_new_model(hub.get_arch_config("tiny"), device=torch.device("cpu"))
x = torch.randn(1, 100, tiny.config.input_dim)
from fairseq2.nn import BatchLayout
y, layout = tiny(x, BatchLayout.of(x))
print(json.dumps({
    "archs": sorted(hub.get_archs()),
    "paper_params": sum(p.numel() for p in paper.parameters()),
    "paper_device": str(next(paper.parameters()).device),
    "tiny_params": sum(p.numel() for p in tiny.parameters()),
    "tiny_device": str(next(tiny.parameters()).device),
    "tiny_out": list(y.shape),
}))
"""


def run_python(script: str, cwd: Path | None = None, **env: str) -> str:
    full_env = {**os.environ, "FAIRSEQ2_EXTENSION_TRACE": "1", **env}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_fresh_process_discovers_plugin_and_builds_archs() -> None:
    info = json.loads(run_python(DISCOVERY_SCRIPT))

    assert {"paper", "tiny"} <= set(info["archs"])
    assert info["paper_device"] == "meta"
    assert abs(info["paper_params"] - 277e6) <= 0.05 * 277e6
    assert info["tiny_device"] == "cpu"
    assert 100_000 <= info["tiny_params"] <= 1_000_000
    assert info["tiny_out"][0] == 1 and info["tiny_out"][2] == 64


def test_broken_registration_fails_loudly(tmp_path: Path) -> None:
    """With FAIRSEQ2_EXTENSION_TRACE=1 a failing extension aborts init."""
    (tmp_path / "sitecustomize.py").write_text(
        "import speechmapper_plugin.extension as e\n"
        "def broken(container):\n    raise RuntimeError('registration exploded')\n"
        "e.setup_fairseq2_extension = broken\n"
        "import speechmapper_plugin\nspeechmapper_plugin.setup_fairseq2_extension = broken\n"
    )
    env = {
        **os.environ,
        "FAIRSEQ2_EXTENSION_TRACE": "1",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    result = subprocess.run(
        [sys.executable, "-c", "from fairseq2 import init_fairseq2; init_fairseq2()"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode != 0
    assert "registration exploded" in result.stderr


def test_load_projector_from_card_and_from_derived_card(
    test_cards: SessionCards,
) -> None:
    saved = torch.load(test_cards.projector_checkpoint)["model"]

    for card in ("test_projector_base", "test_projector_child"):
        model = load_model(card, device=torch.device("cpu"))
        assert isinstance(model, SpeechMapperProjector)
        assert model.config.output_dim == 32
        state = model.state_dict()
        assert state.keys() == saved.keys()
        for key, value in saved.items():
            torch.testing.assert_close(state[key], value)


def card_names(assets: Path) -> set[str]:
    import yaml

    names = set()
    for path in assets.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                names.add(doc["name"])
    return names


def test_bundled_cards_resolve_from_the_checkout(repo_root: Path) -> None:
    from fairseq2.assets import AssetStore
    from fairseq2.runtime.dependency import get_dependency_resolver

    store = get_dependency_resolver().resolve(AssetStore)
    names = card_names(repo_root / "assets")
    assert names, "the plugin ships no asset card"
    for name in names:
        assert store.retrieve_card(name).name == name


@pytest.mark.slow
def test_wheel_ships_cards_and_entry_point(repo_root: Path, tmp_path: Path) -> None:
    wheel_dir = tmp_path / "wheel"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(wheel_dir),
            str(repo_root),
        ],
        check=True,
        timeout=600,
    )
    (wheel,) = wheel_dir.glob("*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert (
            "speechmapper_plugin:setup_fairseq2_extension"
            in archive.read(entry_points).decode()
        )

    shipped = {
        n
        for n in names
        if n.startswith("speechmapper_plugin/assets/") and n.endswith(".yaml")
    }
    in_checkout = {
        "speechmapper_plugin/assets/" + p.relative_to(repo_root / "assets").as_posix()
        for p in (repo_root / "assets").rglob("*.yaml")
    }
    assert shipped == in_checkout and shipped
    # Data files the code opens at run time.
    assert "speechmapper_plugin/evaluation/judge_prompt.txt" in names
    assert "speechmapper_plugin/evaluation/judge_accuracy_prompt.txt" in names

    # Installed from the wheel (not the checkout), fairseq2's package lister finds them.
    target = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    script = (
        "import json, speechmapper_plugin\n"
        "from fairseq2.assets import StandardPackageFileLister\n"
        "files = StandardPackageFileLister().list('speechmapper_plugin.assets', 'test')\n"
        "print(json.dumps({'module': speechmapper_plugin.__file__, 'files': sorted(str(f) for f in files)}))\n"
    )
    # Run outside the checkout, so that only the wheel's copy is importable first.
    info = json.loads(run_python(script, cwd=tmp_path, PYTHONPATH=str(target)))
    assert info["module"].startswith(str(target))
    found = {Path(f).name for f in info["files"] if f.endswith(".yaml")}
    assert found == {Path(n).name for n in shipped}
