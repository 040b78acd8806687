"""What the tiny speech-encoder checkpoints (SeamlessM4T-v2, Whisper) share:
perturbed random weights, and a card that loads a saved checkpoint as its
family's ``tiny`` arch."""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Final, TypeVar

import torch

TINY_ARCH: Final = "tiny"
"""The arch of every tiny encoder checkpoint (each family registers one)."""


@torch.no_grad()
def perturb_parameters_(model: torch.nn.Module, seed: int, scale: float = 0.1) -> None:
    """Add Gaussian noise to every parameter (deterministic in ``seed``), so
    LayerNorm gains and biases, position tables etc. are all non-trivial."""
    generator = torch.Generator().manual_seed(seed + 1)
    for param in model.parameters():
        param.add_(scale * torch.randn(param.shape, generator=generator))


ModelT = TypeVar("ModelT", bound=torch.nn.Module)


def build_perturbed(
    create_model: Callable[[], ModelT], seed: int, *, fixed: Collection[str] = ()
) -> ModelT:
    """``create_model()`` seeded with ``seed``, every parameter perturbed but
    those named in ``fixed`` (e.g. fixed sinusoidal positions), in eval mode."""
    torch.manual_seed(seed)
    model = create_model()
    kept = {name: model.get_parameter(name).detach().clone() for name in fixed}
    perturb_parameters_(model, seed)
    with torch.no_grad():
        for name, value in kept.items():
            model.get_parameter(name).copy_(value)
    return model.eval()


def tiny_encoder_card(
    name: str, family: str, checkpoint: Path, *, arch: str = TINY_ARCH
) -> dict[str, object]:
    """A card that loads ``checkpoint`` as the ``tiny`` arch of ``family`` (or
    ``arch``, another view of the same weights such as ``tiny_adaptor``)."""
    return {
        "name": name,
        "model_family": family,
        "model_arch": arch,
        "checkpoint": str(checkpoint),
    }
