"""Helpers the training recipes share."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import cast

from fairseq2.checkpoint import ModelMetadataDumper
from fairseq2.datasets import SyncMode
from fairseq2.logging import log
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn.fsdp import FSDPWrapper, to_fsdp
from fairseq2.recipe.base import RecipeContext
from fairseq2.recipe.config import DatasetSection, TrainerSection
from fairseq2.recipe.error import RecipeError
from fairseq2.utils.validation import ValidationResult
from torch.distributed.fsdp import FSDPModule
from torch.nn import Module, ModuleList

from speechmapper_plugin.datasets.batching import SpeechReadOptions
from speechmapper_plugin.datasets.skips import SkipReport
from speechmapper_plugin.models.adapters import AnyProjector, projector_family
from speechmapper_plugin.validation import check_positive_fields


@dataclass(kw_only=True)
class SpeechDatasetSection(DatasetSection):
    """A dataset section with splits and batching of cached speech features."""

    train_split: str = "train"

    valid_splits: list[str] = field(default_factory=list)
    """Each validation split is reported on its own."""

    max_num_frames: int = 20_000
    """Frames (25 Hz, after 2:1 averaging) per batch and rank, padding included."""

    batch_size: int | None = None
    """If set, fixed-size batches instead of frame-budget batches."""

    example_shuffle_window: int = 10_000
    """0 = shuffle the whole split, 1 = no shuffling."""

    batch_shuffle_window: int = 100

    prefetch: int = 4

    num_parallel_calls: int = 4

    def validate(self) -> ValidationResult:
        result = super().validate()
        check_positive_fields(result, self, ("max_num_frames",))
        if self.batch_size is not None and self.batch_size < 1:
            result.add_error(
                f"`batch_size` must be positive, but is {self.batch_size}."
            )
        return result

    def read_options(
        self,
        *,
        seed: int,
        train: bool,
        num_accumulate: int = 1,
        max_num_frames: int | None = None,
    ) -> SpeechReadOptions:
        """Shuffled, synchronised-until-first reads for training; in-order
        reads of every example for validation."""
        return SpeechReadOptions(
            max_num_frames=max_num_frames or self.max_num_frames,
            batch_size=self.batch_size,
            example_shuffle_window=self.example_shuffle_window if train else 1,
            batch_shuffle_window=self.batch_shuffle_window if train else 1,
            num_accumulate=num_accumulate,
            prefetch=self.prefetch,
            num_parallel_calls=self.num_parallel_calls,
            sync_mode=SyncMode.UNTIL_FIRST if train else SyncMode.UNTIL_LAST,
            seed=seed,
        )


def record_target_llm(
    context: RecipeContext, projector: AnyProjector, llm_card: str
) -> None:
    """Names the target LLM in the projector config and in the checkpoint card
    (``checkpoints/model.yaml``), so later stages and inference can check it.

    :raises RecipeError: if the projector was trained for another LLM.
    """
    current = projector.config.target_llm
    if current is not None and current != llm_card:
        raise RecipeError(
            f"The projector was trained for the target LLM '{current}', but this run targets '{llm_card}'; its speech embeddings live in another embedding space. Use a projector trained for '{llm_card}' (stage 1) or target '{current}'."
        )

    projector.config = replace(projector.config, target_llm=llm_card)

    if context.gangs.root.rank == 0:
        dumper = context.resolver.resolve(ModelMetadataDumper)  # type: ignore[type-abstract]
        dumper.dump(
            context.output_dir.joinpath("checkpoints"),
            projector_family(projector),
            projector.config,
        )


def log_skip_report(context: RecipeContext, report: SkipReport) -> None:
    """Logs a split's skip summary and lists the skipped examples in
    ``OUT/skipped/<split>.tsv``."""
    log.info("Dataset {}", report.summary())

    if report.num_skipped and context.gangs.root.rank == 0:
        path = context.output_dir.joinpath(f"skipped/{report.split}.tsv")
        report.write_tsv(path)
        log.warning(
            "{} skipped examples of '{}' are listed in {}.",
            report.num_skipped,
            report.split,
            path,
        )


def shard_frozen_llm(
    context: RecipeContext, model: TransformerLM, trainer: TrainerSection
) -> Module:
    """Shards a frozen LLM with FSDP over the data-parallel ranks.

    fairseq2 0.8.1 hands every rank the whole reference model (loaded on rank 0
    and broadcast), so each rank briefly holds it in full; once sharded, a rank
    keeps its shard plus the layer being computed.

    Stage 2 calls the LLM's parts directly (embeddings, decoder, final
    projection: it feeds embeddings, not token ids), so every part with
    parameters becomes an FSDP unit of its own; the root holds none.
    """
    gangs = context.gangs
    if gangs.sdp.size == 1:
        log.info("One sharded data-parallel rank: the frozen LLM is not sharded.")
        return model

    def apply(module: Module, wrapper: FSDPWrapper) -> Module:
        lm = cast(TransformerLM, module)
        if trainer.fsdp.granularity == "stack":
            lm.register_module("decoder", wrapper(lm.decoder))
        else:
            decoder = lm.decoder
            # Every layer reshards after its forward (fairseq2's layerwise
            # helper keeps the last one gathered for the backward pass of a
            # trained model; a frozen one is also run under inference mode by
            # the validator, which would leave that gathered copy unusable).
            layers = cast(ModuleList, decoder.layers)
            for idx, layer in enumerate(layers):
                layers[idx] = wrapper(layer)
            layer_norm = getattr(decoder, "layer_norm", None)
            if isinstance(layer_norm, Module):
                decoder.register_module("layer_norm", wrapper(layer_norm))
        lm.register_module("decoder_frontend", wrapper(lm.decoder_frontend))
        lm.register_module("final_proj", wrapper(lm.final_proj))
        return lm

    log.info(
        "Sharding the frozen LLM with FSDP ({}) over {} processes.",
        trainer.fsdp.version,
        gangs.sdp.size,
    )

    sharded = to_fsdp(
        model,
        gangs,
        apply,
        version=trainer.fsdp.version,
        reshard_after_forward=trainer.fsdp.reshard_after_forward,
    )
    sharded.requires_grad_(False)

    # FSDP2 reuses the storage of gathered parameters. Allocate it here, outside
    # inference mode: if fairseq2's validator (which runs in inference mode)
    # gathered first, the storage would be an inference tensor that training
    # steps may not write to.
    for unit in sharded.modules():
        if isinstance(unit, FSDPModule):
            unit.unshard()
            unit.reshard()

    return sharded
