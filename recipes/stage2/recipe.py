"""Stage 2 as a fairseq2 recipe: the stage-1 projector is attached to the frozen
LLM and tuned on instructions with ``(1−σ)·CE + σ·MSE``.

The LLM is a reference model (its own config section, loaded frozen and in
eval mode): it is never a submodule of the trained model, so the optimizer and
the checkpoints hold the projector only.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import yaml
from fairseq2.logging import log
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.recipe.base import Recipe, RecipeContext
from fairseq2.recipe.composition import register_reference_model
from fairseq2.recipe.error import RecipeError
from fairseq2.runtime.dependency import DependencyContainer
from fairseq2.task import Task
from torch import Tensor
from typing_extensions import final, override

from recipes.common import (
    CriterionEvalUnit,
    CriterionTrainUnit,
    TranscriptTargetsSection,
    get_projector,
    load_target_tokens,
    log_skip_report,
    record_speech_features,
    record_target_llm,
    shard_frozen_llm,
)
from recipes.stage2.config import Stage2Config
from recipes.stage2.criterion import Stage2Criterion
from speechmapper_plugin.datasets.instructions import (
    InstructionDataset,
    PreparedInstructions,
)
from speechmapper_plugin.llm import (
    chat_template_for_card,
    read_llm_embed_dim,
    read_llm_max_seq_len,
)
from speechmapper_plugin.losses.adapter import AdapterLossWeights
from speechmapper_plugin.models.adapters import AdapterConfig, adapter_kind
from speechmapper_plugin.models.speechmapper import check_llm_embedding_dim


@final
class Stage2Recipe(Recipe):
    @override
    def register(self, container: DependencyContainer) -> None:
        # Loaded lazily by `get_model_as` (after the cheap checks), and
        # broadcast to every data-parallel rank by fairseq2's loader.
        register_reference_model(container, "llm")

    @override
    def create_task(self, context: RecipeContext) -> Task:
        config = context.get_config_as(Stage2Config)

        llm_card = config.llm.name
        if llm_card is None:
            raise RecipeError("`llm.name` must name the asset card of the target LLM.")

        projector = get_projector(context)

        # Everything that can be wrong is checked before the LLM is loaded: the
        # speech features and target LLM of the projector, the widths, the
        # template, the pad token (and BOS/EOS) of the MSE targets, and every
        # example of every split.
        dataset = context.get_dataset_as(InstructionDataset)
        try:
            stores = dataset.stores()
        except (ValueError, OSError) as ex:
            raise RecipeError(str(ex)) from None
        record_speech_features(projector, stores)
        record_target_llm(context, projector, llm_card)

        try:
            # Reads `output_dim` only, which every projector config has.
            check_llm_embedding_dim(
                projector.config,  # type: ignore[arg-type]
                read_llm_embed_dim(llm_card),
                llm_card,
            )
            template = chat_template_for_card(llm_card)
            max_seq_len = read_llm_max_seq_len(llm_card)
        except ValueError as ex:
            raise RecipeError(str(ex)) from None

        # The transcripts become MSE target ids exactly as in stage 1, and the
        # responses that are the transcript are written by the same policy.
        prev = config.common.assets.prev_checkpoint_dir
        if prev is not None:
            check_stage1_targets(Path(prev).parent / "config.yaml", config.target_llm)
        tokens = load_target_tokens(config.target_llm, llm_card)

        ds = config.dataset

        def prepare(split: str) -> PreparedInstructions:
            try:
                prepared = dataset.prepare(
                    split,
                    targets=tokens,
                    template=template,
                    projector=projector.config,
                    max_seq_len=max_seq_len,
                    max_num_frames=ds.max_num_frames if ds.batch_size is None else None,
                    system_prompt=config.prompt.system_prompt,
                )
            except ValueError as ex:
                raise RecipeError(str(ex)) from None
            log_skip_report(context, prepared.report)
            if prepared.num_without_mse:
                log.info(
                    "{} of {} kept examples of '{}' train without the MSE term (no transcript, or one longer than the projector output).",
                    prepared.num_without_mse,
                    len(prepared.examples),
                    split,
                )
            return prepared

        train = prepare(ds.train_split)
        valid = {split: prepare(split) for split in ds.valid_splits}

        llm = context.get_model_as(TransformerLM, "llm")

        # The MSE targets: the LLM's own embedding table (a full copy when the
        # LLM is sharded below: ~1 GB for an 8B LLM in bf16).
        table = getattr(getattr(llm.decoder_frontend, "embed", None), "weight", None)
        if not isinstance(table, Tensor):
            raise RecipeError(
                f"{llm_card} has no token-embedding table (`decoder_frontend.embed`)."
            )
        table = table.detach()

        # A fresh `ctc_compression` adapter (no stage 1 checked it) predicts
        # the LLM's tokens: its head must have the LLM's vocabulary.
        if isinstance(projector.config, AdapterConfig):
            try:
                adapter_kind(projector.config.kind).check_llm_vocabulary(
                    projector.config, table.size(0), llm_card
                )
            except ValueError as ex:
                raise RecipeError(str(ex)) from None

        if config.trainer.data_parallelism == "fsdp":
            # One switch shards both models: the projector (fairseq2's
            # trainer) and the frozen LLM.
            table = table.clone()
            llm = shard_frozen_llm(context, llm, config.trainer)  # type: ignore[assignment]

        try:
            targets = tokens.with_table(table)
        except ValueError as ex:
            raise RecipeError(str(ex)) from None

        # A variable-length adapter trains its length head here too (a fresh
        # one has only stage 2 to learn it from).
        adapter_weights = None
        if projector.config.variable_length:
            adapter_weights = AdapterLossWeights(
                ctc=config.loss.adapter_ctc_weight,
                quantity=config.loss.quantity_weight,
            )

        def criterion(*, compute_all: bool) -> Stage2Criterion:
            return Stage2Criterion(
                context.get_data_parallel_model(),
                llm,
                targets,
                sigma=config.loss.sigma,
                alpha=config.loss.alpha,
                compute_all=compute_all,
                adapter_weights=adapter_weights,
            )

        train_reader = dataset.create_reader(
            train, context.gangs, ds.train_read_options(config.common, config.trainer)
        )

        valid_units = []
        valid_readers = []
        for split, prepared in valid.items():
            valid_readers.append(
                dataset.create_reader(
                    prepared,
                    context.gangs,
                    ds.read_options(seed=config.common.seed, train=False),
                )
            )
            valid_units.append(CriterionEvalUnit(criterion(compute_all=True), split))

        log.info(
            "Stage 2: σ = {} (CE weight {:.6g}), α = {}; the LLM ({}) stays frozen.",
            config.loss.sigma,
            1.0 - config.loss.sigma,
            config.loss.alpha,
            llm_card,
        )

        unit = CriterionTrainUnit(criterion(compute_all=False))

        return context.create_trainer(unit, train_reader, valid_units, valid_readers)

    @property
    @override
    def config_kls(self) -> type[object]:
        return Stage2Config


def check_stage1_targets(path: Path, section: TranscriptTargetsSection) -> None:
    """Stage 2's MSE targets must be the ones stage 1 trained on: compare
    ``section`` with the ``target_llm`` section of the stage-1 run's
    ``config.yaml`` (``path``), when there is one.

    :raises RecipeError: naming each field that differs and its stage-1 value.
    """
    if not path.is_file():
        return

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        log.warning(
            "Cannot read {}: the MSE targets are not compared with stage 1's.", path
        )
        return

    stage1 = data.get("target_llm") if isinstance(data, dict) else None
    if not isinstance(stage1, dict):
        return

    wrong = [
        f"`target_llm.{f.name}: {stage1[f.name]}` (this run: {getattr(section, f.name)})"
        for f in fields(TranscriptTargetsSection)
        # The opt-out is a permission, not a property of the targets.
        if f.name != "allow_weak_pad_row"
        and f.name in stage1
        and stage1[f.name] != getattr(section, f.name)
    ]
    if wrong:
        raise RecipeError(
            f"The stage-1 run ({path}) built its MSE targets with {', '.join(wrong)}; stage 2's MSE term must regress onto the same targets: set the same values in this run's `target_llm` section."
        )
