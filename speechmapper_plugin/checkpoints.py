"""Reads the tensors of a checkpoint that a caller selects by key, and no others.

fairseq2's loaders (``fairseq2.io.SafetensorsLoader``, the model-checkpoint
loaders) read every tensor of a file before anyone can drop one. Our speech
encoders are a quarter of a SeamlessM4T checkpoint and stage 1 needs only the
LLM's embedding table, so this module reads headers and index files first and
then only the chosen tensors:

- safetensors files (one, or the shards of a directory), whose headers give
  every key, shape and dtype without touching tensor data;
- Hugging Face index files (``*.index.json``), whose ``weight_map`` says which
  shard holds which key, so a sharded checkpoint opens only the shards it needs;
- PyTorch ``.pt`` / ``.pth`` / ``.bin`` files, memory-mapped (``torch.load(
  mmap=True)``) so only the pages of the tensors kept are ever read.

Selection is a :data:`KeySelector`: all keys in, the keys to read out.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

SAFETENSORS_DTYPES: Final[Mapping[str, torch.dtype]] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
"""The dtype names of safetensors headers, as torch dtypes."""

SAFETENSORS_INDEX: Final = "model.safetensors.index.json"

TORCH_INDEX: Final = "pytorch_model.bin.index.json"

INDEX_FILES: Final = (SAFETENSORS_INDEX, TORCH_INDEX)
"""Hugging Face's index files of sharded checkpoints, preferred in this order."""

TORCH_SUFFIXES: Final = (".pt", ".pth", ".bin")

KeySelector = Callable[[Sequence[str]], Iterable[str]]
"""All keys of a checkpoint -> the keys to read (may raise ``ValueError`` on
keys it does not expect)."""


class CheckpointReadError(ValueError):
    """A checkpoint file cannot be read, or does not hold what was asked for."""


@dataclass(frozen=True)
class TensorHeader:
    """A safetensors tensor as its file's header describes it."""

    file: Path
    shape: tuple[int, ...]
    dtype: torch.dtype | None
    """``None`` for a dtype torch has no name for here (see :data:`SAFETENSORS_DTYPES`)."""


def read_weight_map(index: Path) -> dict[str, str]:
    """The ``weight_map`` (key -> shard file name) of a Hugging Face index file."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as ex:
        raise CheckpointReadError(
            f"{index} is not a valid checkpoint index (a JSON object with a `weight_map`): {ex}"
        ) from ex

    if not isinstance(weight_map, Mapping):
        raise CheckpointReadError(f"The `weight_map` of {index} is not an object.")

    return {str(k): str(v) for k, v in weight_map.items()}


def keys_by_shard(
    weight_map: Mapping[str, str], select: KeySelector
) -> dict[str, list[str]]:
    """The keys ``select`` picks from an index, grouped by the shard that holds them."""
    by_shard: dict[str, list[str]] = {}
    for key in select(list(weight_map)):
        by_shard.setdefault(weight_map[key], []).append(key)

    return dict(sorted(by_shard.items()))


def find_index(directory: Path) -> Path | None:
    """The index file of a sharded Hugging Face checkpoint directory, if any."""
    for name in INDEX_FILES:
        if (directory / name).is_file():
            return directory / name

    return None


def read_safetensors_headers(files: Sequence[Path]) -> dict[str, TensorHeader]:
    """The header of every tensor in ``files``; no tensor data is read.

    :raises CheckpointReadError: a file is not safetensors, or two files hold
        the same key.
    """
    headers: dict[str, TensorHeader] = {}

    for file in files:
        with open_safetensors(file) as f:
            for key in f.keys():
                if key in headers:
                    raise CheckpointReadError(
                        f"`{key}` is in both {headers[key].file.name} and {file.name} of {file.parent}."
                    )
                view = f.get_slice(key)
                headers[key] = TensorHeader(
                    file=file,
                    shape=tuple(view.get_shape()),
                    dtype=SAFETENSORS_DTYPES.get(view.get_dtype()),
                )

    return headers


def read_safetensors(files: Sequence[Path], select: KeySelector) -> dict[str, Tensor]:
    """The tensors of ``files`` that ``select`` picks, each read once.

    Every header is read before any tensor, so a selector that rejects an
    unexpected key raises before tensor data is touched.
    """
    headers = read_safetensors_headers(files)

    wanted = list(select(list(headers)))
    _check_present(wanted, headers, files)

    by_file: dict[Path, list[str]] = {}
    for key in wanted:
        by_file.setdefault(headers[key].file, []).append(key)

    tensors: dict[str, Tensor] = {}
    for file, keys in by_file.items():
        tensors.update(read_safetensors_file(file, keys))

    return tensors


def read_safetensors_file(file: Path, keys: Sequence[str]) -> dict[str, Tensor]:
    """Read ``keys`` of one safetensors file into new in-memory tensors.

    On little-endian hosts (safetensors' byte order) each tensor's bytes go
    straight into its destination: copying out of a memory map would count
    every mapped page in the resident set while copying, twice the tensor at
    the peak.
    """
    if sys.byteorder != "little":
        with open_safetensors(file) as f:
            return {key: f.get_tensor(key).clone() for key in keys}

    tensors: dict[str, Tensor] = {}
    try:
        with file.open("rb") as f:
            header_len = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(header_len))
            for key in keys:
                tensors[key] = _read_into(f, file, key, header[key], 8 + header_len)
    except (OSError, ValueError, KeyError) as ex:
        if isinstance(ex, CheckpointReadError):
            raise
        raise CheckpointReadError(
            f"{file} cannot be read as a safetensors file: {ex}"
        ) from ex

    return tensors


def _read_into(
    f: Any, file: Path, key: str, entry: Mapping[str, Any], data_start: int
) -> Tensor:
    begin, end = entry["data_offsets"]
    tensor = torch.empty(entry["shape"], dtype=SAFETENSORS_DTYPES[entry["dtype"]])
    buffer = tensor.view(torch.uint8).numpy().data.cast("B")
    if buffer.nbytes != end - begin:
        raise CheckpointReadError(
            f"{file}: '{key}' holds {end - begin} bytes, but its shape and dtype need {buffer.nbytes}."
        )

    f.seek(data_start + begin)
    done = 0
    while done < buffer.nbytes:
        n = f.readinto(buffer[done:])
        if not n:
            raise CheckpointReadError(
                f"{file} ends inside '{key}' ({done} of {buffer.nbytes} bytes read)."
            )
        done += n

    return tensor


def open_safetensors(file: Path) -> Any:
    """``safe_open`` (a context manager), with unreadable files as :class:`CheckpointReadError`."""
    try:
        return safe_open(str(file), framework="pt", device="cpu")
    except (SafetensorError, OSError) as ex:
        raise CheckpointReadError(
            f"{file} cannot be read as a safetensors file: {ex}"
        ) from ex


def load_torch_state(path: Path) -> dict[str, object]:
    """The state dict of a ``torch.save`` file, memory-mapped.

    fairseq2's legacy ``{"model": state_dict}`` layout is unwrapped. Nothing is
    read until a tensor is used.
    """
    try:
        state = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as ex:
        raise CheckpointReadError(
            f"{path} cannot be memory-mapped as a PyTorch checkpoint ({ex}). Only the zip format of `torch.save` (PyTorch >= 1.6) can be read without loading every tensor; re-save it or convert it to safetensors."
        ) from ex
    except Exception as ex:  # pickle errors, truncated zips, forbidden globals
        raise CheckpointReadError(
            f"{path} cannot be read as a PyTorch checkpoint: {ex}"
        ) from ex

    if not isinstance(state, dict):
        raise CheckpointReadError(
            f"{path} holds a {type(state).__name__}, not a state dict."
        )

    nested = state.get("model")
    if isinstance(nested, dict):
        return nested

    return state


def read_checkpoint_tensors(path: Path, select: KeySelector) -> dict[str, Tensor]:
    """The tensors of the checkpoint at ``path`` that ``select`` picks.

    ``path`` is a safetensors file, a ``.pt``/``.pth``/``.bin`` file, an index
    file, or a directory with an index file or ``*.safetensors`` shards. Only
    the shards holding picked keys are opened, only picked tensors are read,
    and the results are in-memory tensors, not views of the files.
    """
    if path.is_dir():
        index = find_index(path)
        if index is not None:
            return _read_via_index(index, select)

        files = sorted(path.glob("*.safetensors"))
        if not files:
            raise CheckpointReadError(
                f"{path} has no {' or '.join(INDEX_FILES)} and no *.safetensors file."
            )
        return read_safetensors(files, select)

    if path.suffix == ".json":
        return _read_via_index(path, select)

    if path.suffix == ".safetensors":
        return read_safetensors([path], select)

    if path.suffix in TORCH_SUFFIXES:
        state = load_torch_state(path)
        wanted = list(select(list(state)))
        _check_present(wanted, state, [path])
        return {k: _as_tensor(state[k], k, path).clone() for k in wanted}

    raise CheckpointReadError(
        f"{path} has an unsupported checkpoint format '{path.suffix}'; expected .safetensors, {', '.join(TORCH_SUFFIXES)}, a *.index.json file or a checkpoint directory."
    )


def _read_via_index(index: Path, select: KeySelector) -> dict[str, Tensor]:
    tensors: dict[str, Tensor] = {}

    for shard_name, keys in keys_by_shard(read_weight_map(index), select).items():
        shard = index.parent / shard_name
        if not shard.is_file():
            raise FileNotFoundError(
                f"{index} puts `{keys[0]}` in {shard_name}, which is missing from {index.parent} (incomplete download?)."
            )
        tensors.update(read_checkpoint_tensors(shard, _these(keys)))

    return tensors


def _check_present(
    keys: Iterable[str], available: Mapping[str, object], files: Sequence[Path]
) -> None:
    missing = [k for k in keys if k not in available]
    if missing:
        where = files[0] if len(files) == 1 else files[0].parent
        raise CheckpointReadError(
            f"{where} has no tensor `{missing[0]}`"
            + (
                f" (and {len(missing) - 1} more keys missing)."
                if len(missing) > 1
                else "."
            )
        )


def _these(keys: Sequence[str]) -> KeySelector:
    return lambda _: keys


def _as_tensor(value: object, key: str, path: Path) -> Tensor:
    if not isinstance(value, Tensor):
        raise CheckpointReadError(
            f"`{key}` in {path} is a {type(value).__name__}, not a tensor."
        )
    return value
