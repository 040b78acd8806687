"""A checkpoint loader that never reads more than the speech encoder.

SeamlessM4T-v2 large checkpoints hold the whole translation model (about 2.3B
parameters); the speech encoder we load is a quarter of it. fairseq2's own
loaders read every tensor before the state-dict converter can drop any: the
safetensors loader reads whole shard files into memory (or, with ``mmap``,
still creates every tensor), the ``.pt`` loader reads the whole file unless
asked to memory-map it.

This loader, used only by the ``sm4t_speech_encoder`` family:

- for safetensors (a file or an HF directory of shards), reads the shard
  headers, picks the speech-encoder keys by name
  (:func:`select_speech_encoder_keys`, which also rejects unexpected keys), and
  materialises only those tensors;
- for ``.pt`` files, delegates to fairseq2 with ``mmap=True``: ``torch.load``
  then maps the file and only the tensors the converter keeps are ever paged
  in.

Meta's released ``seamlessM4T_v2_large.pt`` is a fairseq1 training
checkpoint: next to ``model`` it pickles ``cfg``/``args`` and training state,
which ``torch.load(weights_only=True)`` (fairseq2's default, ``restrict``)
refuses. seamless_communication itself loads it with
``restrict_checkpoints=False``; our card for it sets fairseq2's ``restrict:
false`` field, i.e. the file is unpickled in full and must be trusted. When a
card without that field meets such a file, the error says so instead of
"erroneous checkpoint".
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import final

from fairseq2.file_system import FileSystem
from fairseq2.gang import GangContext
from fairseq2.model_checkpoint import (
    CorruptModelCheckpointError,
    ModelCheckpointLoader,
    ModelCheckpointLoadOptions,
)
from fairseq2.model_checkpoint.common import reshard_tensor
from safetensors import SafetensorError, safe_open
from torch import Tensor
from typing_extensions import override

from speechmapper_plugin.models.sm4t_speech_encoder.interop import (
    select_speech_encoder_keys,
)

KeySelector = Callable[[Iterable[str]], list[str]]
"""Checkpoint keys -> the keys to read (raises ``ValueError`` on unknown ones)."""


@final
class SpeechEncoderCheckpointLoader(ModelCheckpointLoader):
    """Loads only speech-encoder tensors from SeamlessM4T checkpoints.

    :param select_keys: Picks the tensors to read from safetensors headers;
        another family (e.g. ``whisper_encoder``) passes its own selector.
    """

    def __init__(
        self,
        default_loader: ModelCheckpointLoader,
        file_system: FileSystem,
        gang_context: GangContext,
        select_keys: KeySelector | None = None,
    ) -> None:
        self._default_loader = default_loader
        self._file_system = file_system
        self._gang_context = gang_context
        self._select_keys = select_keys or select_speech_encoder_keys

    @override
    def lazy_load(
        self,
        path: Path,
        shard_dims: Mapping[str, int],
        options: ModelCheckpointLoadOptions | None = None,
    ) -> Iterator[tuple[str, Tensor]]:
        if options is None:
            options = ModelCheckpointLoadOptions()

        files = self._safetensors_files(path)
        if files is not None:
            return self._load_safetensors(path, files, shard_dims, options)

        if self._file_system.is_local_path(path):
            options = replace(options, mmap=True)

        return _explain_pickle_errors(
            path, options, self._default_loader.lazy_load(path, shard_dims, options)
        )

    def _load_safetensors(
        self,
        path: Path,
        files: list[Path],
        shard_dims: Mapping[str, int],
        options: ModelCheckpointLoadOptions,
    ) -> Iterator[tuple[str, Tensor]]:
        state_dict = read_speech_encoder_safetensors(
            path, files, select_keys=self._select_keys
        )

        if options.state_dict_converter is not None:
            state_dict = options.state_dict_converter(state_dict)

        gangs = options.gangs or self._gang_context.get_current_gangs()

        for key, tensor in state_dict.items():
            if not isinstance(tensor, Tensor):
                raise CorruptModelCheckpointError(path, f"{key} is not a tensor.")

            yield (
                key,
                reshard_tensor(
                    key,
                    [[tensor]],
                    (1, 1),
                    (gangs.tp.size, gangs.sdp.size),
                    (gangs.tp.rank, gangs.sdp.rank),
                    shard_dims,
                ),
            )

    def _safetensors_files(self, path: Path) -> list[Path] | None:
        """The local safetensors files at ``path``; ``None`` if it is not one."""
        if not self._file_system.is_local_path(path):
            return None

        if path.suffix == ".safetensors" and self._file_system.is_file(path):
            return [path]

        if self._file_system.is_dir(path):
            files = sorted(self._file_system.glob(path, "*.safetensors"))
            if files:
                return files

        return None

    @override
    def supports_path(self, path: Path) -> bool:
        return self._safetensors_files(path) is not None or (
            self._default_loader.supports_path(path)
        )


def _explain_pickle_errors(
    path: Path,
    options: ModelCheckpointLoadOptions,
    tensors: Iterator[tuple[str, Tensor]],
) -> Iterator[tuple[str, Tensor]]:
    """``tensors``, with the two ways a full-pickle checkpoint fails explained."""
    try:
        yield from tensors
    except CorruptModelCheckpointError as ex:
        if options.restrict and _is_weights_only_refusal(ex):
            raise CorruptModelCheckpointError(
                path,
                f"{path} holds pickled Python objects besides tensors (as Meta's fairseq1 `seamlessM4T_v2_large.pt` does), which the restricted unpickler refuses. If you trust the file, load it through a card with `restrict: false` (like `seamless_m4t_v2_large_speech_encoder_meta`), or pass `restrict=False` to `get_sm4t_speech_encoder_hub().load_custom_model`; otherwise use the safetensors release (`seamless_m4t_v2_large_speech_encoder`).",
            ) from ex
        raise
    except ModuleNotFoundError as ex:
        raise CorruptModelCheckpointError(
            path,
            f"Unpickling {path} needs the Python module `{ex.name}`, which is not installed; install it (the checkpoint pickles objects of it next to the weights) or use the safetensors release (`seamless_m4t_v2_large_speech_encoder`).",
        ) from ex


def _is_weights_only_refusal(error: BaseException) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, pickle.UnpicklingError) and "weights_only" in str(cause):
            return True
        cause = cause.__cause__
    return False


def read_speech_encoder_safetensors(
    path: Path,
    files: list[Path],
    *,
    select_keys: KeySelector = select_speech_encoder_keys,
) -> dict[str, object]:
    """Read the speech-encoder tensors of (sharded) safetensors files.

    All headers are read first, so an unexpected key raises before any tensor
    data is touched; then only the selected tensors are created.
    """
    keys_by_file: dict[Path, list[str]] = {}

    try:
        for file in files:
            with safe_open(file, framework="pt", device="cpu") as f:
                keys_by_file[file] = list(f.keys())
    except (SafetensorError, OSError) as ex:
        raise CorruptModelCheckpointError(
            path, f"{path} cannot be read as safetensors: {ex}"
        ) from ex

    all_keys = [k for keys in keys_by_file.values() for k in keys]
    if len(set(all_keys)) != len(all_keys):
        raise CorruptModelCheckpointError(
            path, f"{path} has a key in more than one safetensors file."
        )

    wanted = set(select_keys(all_keys))

    state_dict: dict[str, object] = {}

    for file, keys in keys_by_file.items():
        needed = [k for k in keys if k in wanted]
        if not needed:
            continue

        with safe_open(file, framework="pt", device="cpu") as f:
            for key in needed:
                state_dict[key] = f.get_tensor(key)

    return state_dict
