"""A checkpoint loader that never reads more than the speech encoder.

Used by every speech-encoder family (``sm4t_speech_encoder``,
``whisper_encoder``), each with its own key selector. SeamlessM4T-v2 large
checkpoints hold the whole translation model (about 2.3B parameters); the
speech encoder we load is a quarter of it (Whisper's ``model.safetensors``
holds encoder and decoder). fairseq2's own
loaders read every tensor before the state-dict converter can drop any: the
safetensors loader reads whole shard files into memory (or, with ``mmap``,
still creates every tensor), the ``.pt`` loader reads the whole file unless
asked to memory-map it.

This loader:

- for safetensors (a file or an HF directory of shards, through its index file
  when it has one), reads the headers, picks the speech-encoder keys by name
  (the family's selector, which also rejects unexpected keys), and
  materialises only those tensors (:func:`~speechmapper_plugin.checkpoints.read_checkpoint_tensors`);
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
from collections.abc import Iterator, Mapping
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
from torch import Tensor
from typing_extensions import override

from speechmapper_plugin.checkpoints import (
    CheckpointReadError,
    KeySelector,
    read_checkpoint_tensors,
)


@final
class SpeechEncoderCheckpointLoader(ModelCheckpointLoader):
    """Loads only the speech-encoder tensors of a checkpoint.

    :param select_keys: Picks the tensors to read from the checkpoint's keys
        (e.g. ``select_speech_encoder_keys`` of ``sm4t_speech_encoder``).
    """

    def __init__(
        self,
        default_loader: ModelCheckpointLoader,
        file_system: FileSystem,
        gang_context: GangContext,
        select_keys: KeySelector,
    ) -> None:
        self._default_loader = default_loader
        self._file_system = file_system
        self._gang_context = gang_context
        self._select_keys = select_keys

    @override
    def lazy_load(
        self,
        path: Path,
        shard_dims: Mapping[str, int],
        options: ModelCheckpointLoadOptions | None = None,
    ) -> Iterator[tuple[str, Tensor]]:
        if options is None:
            options = ModelCheckpointLoadOptions()

        if self._is_local_safetensors(path):
            return self._load_safetensors(path, shard_dims, options)

        if self._file_system.is_local_path(path):
            options = replace(options, mmap=True)

        return _explain_pickle_errors(
            path, options, self._default_loader.lazy_load(path, shard_dims, options)
        )

    def _load_safetensors(
        self,
        path: Path,
        shard_dims: Mapping[str, int],
        options: ModelCheckpointLoadOptions,
    ) -> Iterator[tuple[str, Tensor]]:
        try:
            state_dict: dict[str, object] = dict(
                read_checkpoint_tensors(path, self._select_keys)
            )
        except CheckpointReadError as ex:
            raise CorruptModelCheckpointError(path, str(ex)) from ex

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

    def _is_local_safetensors(self, path: Path) -> bool:
        """``path`` is a local safetensors file or a directory of them."""
        if not self._file_system.is_local_path(path):
            return False

        if path.suffix == ".safetensors" and self._file_system.is_file(path):
            return True

        return self._file_system.is_dir(path) and any(
            True for _ in self._file_system.glob(path, "*.safetensors")
        )

    @override
    def supports_path(self, path: Path) -> bool:
        return self._is_local_safetensors(path) or (
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
