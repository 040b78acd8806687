"""``hg://`` cards of the speech encoder download only the shards they need."""

from __future__ import annotations

import json
import shutil
from fnmatch import fnmatch
from pathlib import Path

import pytest
import torch
from fairseq2.assets import AssetCard, AssetDownloadError
from fairseq2.models import load_model
from fairseq2.utils.uri import Uri

from speechmapper_plugin.checkpoints import SAFETENSORS_INDEX
from speechmapper_plugin.models.sm4t_speech_encoder import SM4TSpeechEncoder
from speechmapper_plugin.models.sm4t_speech_encoder import download as download_module
from tests.support.cards import SessionCards

REPO = "facebook/seamless-m4t-v2-large"


def test_hg_checkpoint_downloads_only_speech_encoder_shards(
    test_cards: SessionCards, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A stand-in for the Hub repository: HF shards plus Meta's .pt files.
    remote = tmp_path / "remote"
    shutil.copytree(test_cards.sm4t_hf_dir, remote)
    (remote / "seamlessM4T_v2_large.pt").write_bytes(b"not needed")
    (remote / "vocoder_v2.pt").write_bytes(b"not needed")

    weight_map = json.loads((remote / SAFETENSORS_INDEX).read_text())["weight_map"]
    needed = {f for k, f in weight_map.items() if k.startswith("speech_encoder.")}
    assert needed < set(weight_map.values())  # some shards hold no encoder tensor

    snapshot = tmp_path / "hub_cache" / "snapshot"
    requested: list[list[str]] = []

    def fake_snapshot_download(
        *,
        repo_id: str,
        repo_type: str,
        allow_patterns: list[str],
        force_download: bool,
        local_files_only: bool,
    ) -> str:
        assert (repo_id, repo_type) == (REPO, "model")
        requested.append(list(allow_patterns))
        snapshot.mkdir(parents=True, exist_ok=True)
        for file in remote.iterdir():
            if any(fnmatch(file.name, p) for p in allow_patterns):
                shutil.copy(file, snapshot / file.name)
        return str(snapshot)

    monkeypatch.setattr(download_module, "snapshot_download", fake_snapshot_download)

    card = AssetCard(
        "test_sm4t_hg",
        {
            "name": "test_sm4t_hg",
            "model_family": "sm4t_speech_encoder",
            "model_arch": "tiny",
            "checkpoint": f"hg://{REPO}",
        },
    )
    model = load_model(card, device=torch.device("cpu"))

    assert isinstance(model, SM4TSpeechEncoder)
    assert requested[0] == [SAFETENSORS_INDEX]
    assert {p.name for p in snapshot.iterdir()} == {SAFETENSORS_INDEX} | needed


@pytest.mark.parametrize(
    ("index", "message"),
    [
        ('{"weights": {}}', "not a valid checkpoint index"),
        ('{"weight_map": {"text_decoder.w": "a.safetensors"}}', "maps no"),
    ],
)
def test_unusable_index_is_a_download_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, index: str, message: str
) -> None:
    (tmp_path / SAFETENSORS_INDEX).write_text(index)

    def fake_snapshot_download(**kwargs: object) -> str:
        return str(tmp_path)

    monkeypatch.setattr(download_module, "snapshot_download", fake_snapshot_download)

    manager = download_module.SpeechEncoderDownloadManager(
        default_manager=None  # type: ignore[arg-type]  # hg:// never reaches it
    )
    with pytest.raises(AssetDownloadError, match=message):
        manager.download_model(Uri.parse(f"hg://{REPO}"), "test")
