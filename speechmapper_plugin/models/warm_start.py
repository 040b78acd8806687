"""Warm-starting a projector from another one's checkpoint, possibly trained
for another LLM (issue 22: retargeting).

Stage 1 never runs the LLM and the speech features are cached once, so the
trunk of a projector trained for one LLM (convolutions, Transformer layers,
block projections) already maps speech onto embedding-like sequences. A
projector for another LLM (another width, another tokenizer) starts from it:
every tensor whose name and shape fit is copied, the rest (the final
projection to the new width, ...) keeps its fresh initialisation, and the
copied part may be frozen for the first steps (:class:`LoadedFreeze`) so the
fresh output layer settles before the trunk moves.

The source is a stage-1 or stage-2 run directory, its ``checkpoints``
directory, one ``step_N`` directory of it, or an export directory
(``python -m speechmapper_plugin.export``). Only its tensors and the raw
record of its config are read; its config is never reused (the new projector
has its own ``target_llm``), so its ``target_llm`` is history, not a claim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import torch
import yaml
from torch import Tensor
from torch.distributed.tensor import DTensor
from torch.nn import Module, Parameter
from torch.utils.hooks import RemovableHandle
from typing_extensions import final

from speechmapper_plugin.checkpoints import CheckpointReadError, read_checkpoint_tensors
from speechmapper_plugin.models.projector_base import (
    ProjectorConfigBase,
    SpeechFeaturesConfig,
)

_STEP_DIR: Final = re.compile(r"step_(\d+)")


@dataclass(frozen=True)
class WarmStartSource:
    """A projector checkpoint's tensors and the raw record of its config."""

    path: Path
    """The weights file read."""

    model_config: Mapping[str, Any]
    """Its ``model_config`` as recorded (not structured: only read)."""

    state: Mapping[str, Tensor]

    step: int | None = None
    """The training step of a run checkpoint (``None`` for an export)."""

    @property
    def target_llm(self) -> str | None:
        value = self.model_config.get("target_llm")
        return None if value is None else str(value)

    @property
    def speech_features(self) -> SpeechFeaturesConfig | None:
        record = self.model_config.get("speech_features")
        if not isinstance(record, Mapping):
            return None
        return SpeechFeaturesConfig(
            encoder=str(record["encoder"]),
            layer=int(record["layer"]),
            layer_norm=bool(record["layer_norm"]),
        )

    def feature_problems(self, config: ProjectorConfigBase) -> list[str]:
        """Why the new projector's features differ from the source's (empty if
        they are the same): a warm start reuses the trunk, which only knows
        the features it was trained on."""
        problems = []
        for name in ("input_dim", "frame_averaging"):
            theirs = self.model_config.get(name)
            if theirs is not None and theirs != getattr(config, name):
                problems.append(f"{name} {getattr(config, name)} (source: {theirs})")
        ours, theirs_features = config.speech_features, self.speech_features
        if ours is not None and theirs_features is not None:
            problems.extend(theirs_features.differences(ours))
        return problems


def read_warm_start_source(path: Path) -> WarmStartSource:
    """The last checkpoint of a run directory (or of its ``checkpoints``
    directory), one ``step_N`` directory, or an export directory.

    :raises ValueError: if ``path`` is none of these or cannot be read.
    """
    path = path.expanduser()
    if not path.is_dir():
        raise ValueError(
            f"The warm-start checkpoint {path} is not a directory; give a stage-1 or stage-2 output directory, its `checkpoints` directory, a `checkpoints/step_N` directory or an export directory."
        )

    if (path / "card.yaml").is_file() and (path / "model.safetensors").is_file():
        card = _read_yaml(path / "card.yaml")
        weights = path / "model.safetensors"
        return WarmStartSource(
            path=weights,
            model_config=_model_config(card, path / "card.yaml"),
            state=_read_all(weights),
        )

    step_dir: Path | None = None
    if _STEP_DIR.fullmatch(path.name) and (path.parent / "model.yaml").is_file():
        step_dir, checkpoints = path, path.parent
    elif (path / "checkpoints/model.yaml").is_file():
        checkpoints = path / "checkpoints"
    elif (path / "model.yaml").is_file():
        checkpoints = path
    else:
        raise ValueError(
            f"{path} holds no projector checkpoint: no `checkpoints/model.yaml` (a run directory), `model.yaml` (its checkpoints directory) or `card.yaml` with `model.safetensors` (an export)."
        )

    if step_dir is None:
        steps = sorted(
            (int(m.group(1)), d)
            for d in checkpoints.iterdir()
            if d.is_dir() and (m := _STEP_DIR.fullmatch(d.name))
        )
        if not steps:
            raise ValueError(f"{checkpoints} holds no `step_N` checkpoint yet.")
        step_dir = steps[-1][1]

    files = sorted(
        f
        for pattern in ("*.pt", "*.safetensors")
        for f in step_dir.joinpath("model").rglob(pattern)
    )
    if len(files) != 1:
        raise ValueError(
            f"{step_dir / 'model'} holds {len(files)} weight files; a warm start reads one unsharded checkpoint (DDP). Export the projector first (`python -m speechmapper_plugin.export`) and warm-start from the export."
        )

    match = _STEP_DIR.fullmatch(step_dir.name)
    return WarmStartSource(
        path=files[0],
        model_config=_model_config(
            _read_yaml(checkpoints / "model.yaml"), checkpoints / "model.yaml"
        ),
        state=_read_all(files[0]),
        step=int(match.group(1)) if match else None,
    )


@dataclass(frozen=True)
class WarmStartReport:
    """What a warm start copied and what it left fresh."""

    loaded: list[str]
    """Names of the tensors copied from the source."""

    fresh: dict[str, str] = field(default_factory=dict)
    """Names of the tensors left as initialised -> why."""

    unused: list[str] = field(default_factory=list)
    """Source tensors the model has no place for."""

    def summary(self) -> str:
        """E.g. ``"loaded 40 tensors; fresh: final_proj.weight (shape ...)"``."""
        text = f"loaded {len(self.loaded)} tensors"
        if self.fresh:
            text += "; fresh: " + ", ".join(
                f"{k} ({why})" for k, why in self.fresh.items()
            )
        if self.unused:
            text += f"; {len(self.unused)} source tensors unused ({', '.join(self.unused[:5])}{', ...' if len(self.unused) > 5 else ''})"
        return text


@torch.no_grad()
def load_fitting_tensors(
    model: Module, state: Mapping[str, Tensor], keep_fresh: Sequence[str] = ()
) -> WarmStartReport:
    """Copy into ``model`` every tensor of ``state`` whose name and shape fit
    one of its own (parameters and persistent buffers); the others stay as
    they are.

    :param keep_fresh: regular expressions (``re.match``, as fairseq2's
        optimizer parameter groups) of tensors to leave fresh even though they
        fit: the top layers of a trunk specialise to the source's LLM and its
        training speakers, the lower ones transfer.
    :raises ValueError: if no tensor fits (another architecture altogether),
        or a ``keep_fresh`` pattern matches no tensor of the model (a typo).
    """
    loaded: list[str] = []
    fresh: dict[str, str] = {}
    own = model.state_dict(keep_vars=True)
    patterns = [re.compile(p) for p in keep_fresh]
    for pattern in patterns:
        if not any(pattern.match(name) for name in own):
            raise ValueError(
                f"The `keep_fresh` pattern '{pattern.pattern}' matches no tensor of the model (matched with `re.match` from the start of names such as {', '.join(list(own)[:3])})."
            )
    if any(isinstance(t, DTensor) for t in own.values()):
        raise ValueError(
            "The model is sharded (FSDP): a warm start copies whole tensors. Train the warm-started run with `trainer.data_parallelism=ddp` (a projector fits on one device)."
        )
    for name, tensor in own.items():
        source = state.get(name)
        kept = next((p.pattern for p in patterns if p.match(name)), None)
        if kept is not None:
            fresh[name] = f"kept fresh by '{kept}'"
        elif source is None:
            fresh[name] = "not in the source"
        elif source.shape != tensor.shape:
            fresh[name] = (
                f"shape {tuple(source.shape)} in the source, {tuple(tensor.shape)} here"
            )
        else:
            tensor.copy_(source)
            loaded.append(name)

    if not loaded:
        raise ValueError(
            f"No tensor of the warm-start source fits the model (their names and shapes all differ): the source is another architecture. Its first keys: {', '.join(list(state)[:5])}."
        )

    unused = [name for name in state if name not in own]
    return WarmStartReport(loaded=loaded, fresh=fresh, unused=unused)


@final
class LoadedFreeze:
    """Keeps the warm-started parameters as loaded for the first
    ``num_steps`` training steps, then lets them train.

    Their gradients are zeroed by tensor hooks (before any data-parallel
    reduction, so all ranks agree and Adam's moments stay zero), and at the
    start of each step up to ``num_steps + 1`` the loaded values are written
    back, which undoes the decoupled weight decay that AdamW still applies to
    a parameter with a zero gradient. Call :meth:`set_step` with each step
    number before its forward pass (a train unit's ``set_step_nr``).
    """

    def __init__(self, model: Module, names: list[str], num_steps: int) -> None:
        params = dict(model.named_parameters())
        self._params: dict[str, Parameter] = {
            n: params[n] for n in names if n in params
        }
        self._saved = {n: p.detach().clone() for n, p in self._params.items()}
        self._num_steps = num_steps
        self._frozen = num_steps > 0
        self._handles: list[RemovableHandle] = [
            p.register_hook(self._gate) for p in self._params.values()
        ]

    def _gate(self, grad: Tensor) -> Tensor:
        return torch.zeros_like(grad) if self._frozen else grad

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self._params.values())

    @torch.no_grad()
    def set_step(self, step_nr: int) -> None:
        """Before the forward pass of step ``step_nr`` (1-based)."""
        if step_nr <= self._num_steps + 1:
            for name, param in self._params.items():
                param.copy_(self._saved[name])
        self._frozen = step_nr <= self._num_steps
        if not self._frozen and self._handles:
            for handle in self._handles:
                handle.remove()
            self._handles.clear()
            self._saved.clear()


def _read_yaml(file: Path) -> Mapping[str, Any]:
    try:
        data = yaml.safe_load(file.read_text())
    except (OSError, yaml.YAMLError) as ex:
        raise ValueError(f"{file} cannot be read: {ex}") from ex
    if not isinstance(data, Mapping):
        raise ValueError(f"{file} is not a YAML mapping (an asset card).")
    return data


def _model_config(card: Mapping[str, Any], file: Path) -> Mapping[str, Any]:
    config = card.get("model_config")
    if not isinstance(config, Mapping):
        raise ValueError(f"{file} has no `model_config` mapping.")
    return config


def _read_all(file: Path) -> dict[str, Tensor]:
    try:
        return read_checkpoint_tensors(file, lambda keys: keys)
    except (CheckpointReadError, OSError) as ex:
        raise ValueError(f"The warm-start weights {file} cannot be read: {ex}") from ex
