"""Reads only the token-embedding table of an LLM checkpoint.

Stage 1 needs the target LLM's embedding table ``[V, D]`` and nothing else: an
8B decoder would cost 16 GB to load, its embedding table 1 GB. So we find the
one file and key that hold the table, look at its shape from the file's header
(safetensors) or a memory-mapped unpickling (``torch.load(mmap=True)``), and
copy exactly that tensor into memory. No decoder tensor is ever read and no
model is ever built.

Supported layouts: Hugging Face directories (sharded through
``model.safetensors.index.json`` / ``pytorch_model.bin.index.json``, or a single
``model.safetensors`` / ``pytorch_model.bin``), any directory of
``*.safetensors`` files, single ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin``
files, Meta reference directories with one ``consolidated.00.pth``, and
fairseq2 training checkpoints (``.../model/pp_00/tp_00/sdp_00.pt``) that are
not tensor- or FSDP-sharded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import torch
from fairseq2.assets import AssetCard
from torch import Tensor

from speechmapper_plugin.checkpoints import (
    TORCH_SUFFIXES,
    CheckpointReadError,
    find_index,
    load_torch_state,
    read_checkpoint_tensors,
    read_safetensors_file,
    read_safetensors_headers,
    read_weight_map,
)
from speechmapper_plugin.llm.cards import (
    resolve_checkpoint_path,
    resolve_checkpoint_uri,
    retrieve_llm_card,
)

EMBEDDING_KEYS: Final = (
    "model.embed_tokens.weight",  # Hugging Face (Llama, Mistral, Qwen, ...)
    "decoder_frontend.embed.weight",  # fairseq2
    "tok_embeddings.weight",  # Meta reference (consolidated.*.pth)
)
"""The keys under which checkpoints store the token-embedding table, tried in order."""

CheckpointFormat = Literal["safetensors", "torch"]

TokenEmbeddingLoadError = CheckpointReadError
"""The checkpoint cannot provide a token-embedding table (the error of
:mod:`speechmapper_plugin.checkpoints`, under the name this API has always used)."""


@dataclass(frozen=True)
class TokenEmbeddingSource:
    """Where a checkpoint keeps its token-embedding table, known before reading it."""

    file: Path
    """The file that holds the table."""

    key: str
    """The table's key in that file."""

    format: CheckpointFormat

    shape: tuple[int, int]
    """``(num_embeddings, embed_dim)``."""

    dtype: torch.dtype

    @property
    def num_embeddings(self) -> int:
        return self.shape[0]

    @property
    def embed_dim(self) -> int:
        return self.shape[1]

    def read(self, dtype: torch.dtype | None = None) -> Tensor:
        """Copy the table (and nothing else) into memory as ``dtype``.

        The result is an independent in-memory tensor, not a view of the file.
        """
        if self.format == "safetensors":  # the header was read by the locate
            table = read_safetensors_file(self.file, [self.key])[self.key]
        else:
            table = read_checkpoint_tensors(self.file, lambda _: [self.key])[self.key]
        if dtype is not None and dtype != table.dtype:
            return table.to(dtype)

        return table


def load_token_embeddings(
    source: str | Path | AssetCard,
    *,
    dtype: torch.dtype | None = None,
    key: str | None = None,
) -> Tensor:
    """Return the token-embedding table ``[V, D]`` of an LLM checkpoint.

    :param source: an asset card (or its name), whose ``checkpoint`` is resolved
        through fairseq2's asset download manager; an ``hg://`` / ``file://``
        URI; or a local file or directory.
    :param dtype: convert the table to this dtype; ``None`` keeps the stored one.
    :param key: the table's key, when it is none of :data:`EMBEDDING_KEYS`.
    """
    return locate_token_embeddings(source, key=key).read(dtype)


def locate_token_embeddings(
    source: str | Path | AssetCard, *, key: str | None = None
) -> TokenEmbeddingSource:
    """Find the table and its shape without reading it (see :func:`load_token_embeddings`)."""
    path = _resolve_source(source)

    keys = (key,) if key is not None else EMBEDDING_KEYS

    if not path.exists():
        raise FileNotFoundError(
            f"The LLM checkpoint {path} does not exist. Check the `checkpoint` field of the card or the path you passed."
        )

    if path.is_dir():
        return _locate_in_dir(path, keys)

    return _locate_in_file(path, keys)


def _resolve_source(source: str | Path | AssetCard) -> Path:
    if isinstance(source, AssetCard):
        return resolve_checkpoint_path(source)

    if isinstance(source, Path):
        return source

    if "://" in source:
        return resolve_checkpoint_uri(source)

    path = Path(source).expanduser()
    if (
        path.exists()
        or "/" in source
        or path.suffix in (".safetensors", ".json", *TORCH_SUFFIXES)
    ):
        return path

    return resolve_checkpoint_path(retrieve_llm_card(source))


def _locate_in_dir(directory: Path, keys: Sequence[str]) -> TokenEmbeddingSource:
    index = find_index(directory)
    if index is not None:
        return _locate_via_index(index, keys)

    single = directory / "model.safetensors"
    if single.is_file():
        return _locate_in_file(single, keys)

    safetensors_files = sorted(directory.glob("*.safetensors"))
    if safetensors_files:
        return _locate_in_files(safetensors_files, keys)

    # A fairseq2 checkpoint: ``directory`` itself, or its ``model/`` (a step dir).
    for native in (directory, directory / "model"):
        if (native / "pp_00").is_dir():
            return _locate_in_fairseq2_dir(native, keys)

    consolidated = sorted(directory.glob("consolidated.*.pth"))
    if len(consolidated) == 1:
        return _locate_in_file(consolidated[0], keys)
    if len(consolidated) > 1:
        raise TokenEmbeddingLoadError(
            f"{directory} holds a tensor-parallel Meta reference checkpoint ({len(consolidated)} consolidated.*.pth files) whose embedding table is split across files; use its Hugging Face (safetensors) release instead."
        )

    torch_files = sorted(
        p for p in directory.iterdir() if p.is_file() and p.suffix in TORCH_SUFFIXES
    )
    if len(torch_files) == 1:
        return _locate_in_file(torch_files[0], keys)

    entries = sorted(p.name for p in directory.iterdir())[:20]
    raise TokenEmbeddingLoadError(
        f"{directory} is not a supported LLM checkpoint directory: expected model.safetensors[.index.json], *.safetensors, pytorch_model.bin[.index.json], consolidated.00.pth or a fairseq2 checkpoint (pp_00/tp_00/sdp_00.pt). It contains: {entries}."
    )


def _locate_in_file(path: Path, keys: Sequence[str]) -> TokenEmbeddingSource:
    if path.suffix == ".json":
        return _locate_via_index(path, keys)

    if path.suffix == ".safetensors":
        return _locate_in_files([path], keys)

    if path.suffix in TORCH_SUFFIXES:
        state = load_torch_state(path)
        return _torch_source(path, state, _pick_key(state.keys(), keys, path))

    raise TokenEmbeddingLoadError(
        f"{path} has an unsupported checkpoint format '{path.suffix}'; expected .safetensors, {', '.join(TORCH_SUFFIXES)}, a *.index.json file or a checkpoint directory."
    )


def _locate_via_index(index: Path, keys: Sequence[str]) -> TokenEmbeddingSource:
    weight_map = read_weight_map(index)

    key = _pick_key(weight_map.keys(), keys, index)

    shard = index.parent / str(weight_map[key])
    if not shard.is_file():
        raise FileNotFoundError(
            f"{index} puts `{key}` in {shard.name}, which is missing from {index.parent} (incomplete download?)."
        )

    return _locate_in_file(shard, [key])


def _locate_in_files(
    files: Sequence[Path], keys: Sequence[str]
) -> TokenEmbeddingSource:
    headers = read_safetensors_headers(files)

    key = _pick_key(headers, keys, files[0] if len(files) == 1 else files[0].parent)
    header = headers[key]

    if header.dtype is None or not header.dtype.is_floating_point:
        raise TokenEmbeddingLoadError(
            f"`{key}` in {header.file} has dtype {header.dtype or 'unknown to torch'}; a token-embedding table must be floating point."
        )

    return TokenEmbeddingSource(
        file=header.file,
        key=key,
        format="safetensors",
        shape=_check_2d(header.shape, key, header.file),
        dtype=header.dtype,
    )


def _torch_source(
    path: Path, state: Mapping[str, object], key: str
) -> TokenEmbeddingSource:
    table = state[key]
    if not isinstance(table, Tensor):
        raise TokenEmbeddingLoadError(
            f"`{key}` in {path} is a {type(table).__name__}, not a tensor."
        )
    if not table.is_floating_point():
        raise TokenEmbeddingLoadError(
            f"`{key}` in {path} has dtype {table.dtype}; a token-embedding table must be floating point."
        )

    return TokenEmbeddingSource(
        file=path,
        key=key,
        format="torch",
        shape=_check_2d(tuple(table.shape), key, path),
        dtype=table.dtype,
    )


def _locate_in_fairseq2_dir(
    directory: Path, keys: Sequence[str]
) -> TokenEmbeddingSource:
    pp_dirs = sorted(directory.glob("pp_[0-9][0-9]"))

    seen: list[str] = []

    for pp_dir in pp_dirs:
        tp_dirs = sorted(pp_dir.glob("tp_[0-9][0-9]"))
        sdp_files = sorted((pp_dir / "tp_00").glob("sdp_[0-9][0-9].pt"))
        if len(tp_dirs) != 1 or len(sdp_files) != 1:
            raise TokenEmbeddingLoadError(
                f"{directory} is a sharded fairseq2 checkpoint ({len(tp_dirs)} tensor-parallel, {len(sdp_files)} data-parallel shards); its embedding table is split across files. Load it on 1 rank and save it unsharded, or point the card at the original Hugging Face checkpoint."
            )

        state = load_torch_state(sdp_files[0])
        key = next((k for k in keys if k in state), None)
        if key is not None:
            return _torch_source(sdp_files[0], state, key)

        seen.extend(state.keys())

    raise _no_key_error(keys, seen, directory)


def _pick_key(available: Iterable[str], keys: Sequence[str], where: Path) -> str:
    names = list(available)
    for key in keys:
        if key in names:
            return key

    raise _no_key_error(keys, names, where)


def _no_key_error(
    keys: Sequence[str], seen: Sequence[str], where: Path
) -> TokenEmbeddingLoadError:
    shown = ", ".join(list(seen)[:12]) or "none"
    more = f" (and {len(seen) - 12} more)" if len(seen) > 12 else ""
    return TokenEmbeddingLoadError(
        f"No token-embedding table in {where}: looked for {list(keys)}, found the keys {shown}{more}. Pass `key=` with the right name if the checkpoint uses another one."
    )


def _check_2d(shape: tuple[int, ...], key: str, where: Path) -> tuple[int, int]:
    if len(shape) != 2:
        raise TokenEmbeddingLoadError(
            f"`{key}` in {where} has shape {list(shape)}; a token-embedding table is 2-D [vocab, dim]."
        )

    return shape[0], shape[1]
