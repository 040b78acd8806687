"""Downloads only the speech-encoder shards of a SeamlessM4T Hugging Face repository.

For ``hg://`` checkpoints fairseq2 0.8.1 downloads every ``*.safetensors*``
and ``*.pt`` file of the repository. ``facebook/seamless-m4t-v2-large`` keeps
Meta's ``seamlessM4T_v2_large.pt`` and ``vocoder_v2.pt`` next to the
transformers shards, so a plain download fetches the model twice plus the
vocoder. This manager, used only by the ``sm4t_speech_encoder`` family, reads
``model.safetensors.index.json`` first and downloads the shards that hold
``speech_encoder.*`` tensors. Other schemes go to fairseq2's manager.
"""

from __future__ import annotations

from collections.abc import Sequence, Set
from pathlib import Path
from typing import Final, final

from fairseq2.assets import AssetDownloadError, AssetDownloadManager
from fairseq2.utils.uri import Uri
from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
from typing_extensions import override

from speechmapper_plugin.checkpoints import (
    SAFETENSORS_INDEX,
    CheckpointReadError,
    keys_by_shard,
    read_weight_map,
)

SPEECH_ENCODER_PREFIX: Final = "speech_encoder."


@final
class SpeechEncoderDownloadManager(AssetDownloadManager):
    """fairseq2's download manager, with selective ``hg://`` model downloads."""

    def __init__(self, default_manager: AssetDownloadManager) -> None:
        self._default_manager = default_manager

    @override
    def download_model(
        self,
        uri: Uri,
        model_name: str = "",
        *,
        force: bool = False,
        local_only: bool = False,
        progress: bool = True,
    ) -> Path:
        if uri.scheme != "hg":
            return self._default_manager.download_model(
                uri, model_name, force=force, local_only=local_only, progress=progress
            )

        repo_id = str(uri)[len("hg://") :]

        try:
            patterns = self._speech_encoder_files(repo_id, uri, force, local_only)

            path = snapshot_download(
                repo_id=repo_id,
                repo_type="model",
                allow_patterns=patterns,
                force_download=force,
                local_files_only=local_only,
            )
        except (HfHubHTTPError, LocalEntryNotFoundError) as ex:
            raise AssetDownloadError(uri, f"Hugging Face Hub: {ex}") from ex

        return Path(path)

    def _speech_encoder_files(
        self, repo_id: str, uri: Uri, force: bool, local_only: bool
    ) -> list[str]:
        """The files to fetch: the index and the shards it maps speech-encoder keys to."""
        index_dir = snapshot_download(
            repo_id=repo_id,
            repo_type="model",
            allow_patterns=[SAFETENSORS_INDEX],
            force_download=force,
            local_files_only=local_only,
        )

        index_file = Path(index_dir) / SAFETENSORS_INDEX
        if not index_file.is_file():  # a single, unsharded `model.safetensors`
            return ["*.safetensors"]

        try:
            weight_map = read_weight_map(index_file)
        except CheckpointReadError as ex:
            raise AssetDownloadError(uri, str(ex)) from ex

        shards = list(keys_by_shard(weight_map, _speech_encoder_keys))
        if not shards:
            raise AssetDownloadError(
                uri, f"{SAFETENSORS_INDEX} maps no `{SPEECH_ENCODER_PREFIX}*` tensor."
            )

        return [SAFETENSORS_INDEX, *shards]

    # Tokenizers and datasets are not this family's business: fairseq2's as is.

    @override
    def download_tokenizer(
        self, uri: Uri, tokenizer_name: str = "", **options: bool
    ) -> Path:
        return self._default_manager.download_tokenizer(uri, tokenizer_name, **options)

    @override
    def download_dataset(
        self, uri: Uri, dataset_name: str = "", **options: bool
    ) -> Path:
        return self._default_manager.download_dataset(uri, dataset_name, **options)

    @property
    @override
    def supported_schemes(self) -> Set[str]:
        return self._default_manager.supported_schemes


def _speech_encoder_keys(keys: Sequence[str]) -> list[str]:
    return [k for k in keys if k.startswith(SPEECH_ENCODER_PREFIX)]
