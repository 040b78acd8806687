"""What the recipes share: config sections, the training stages' model and
target lookups, criterion and units, and the frozen LLM's sharding."""

from __future__ import annotations

import sys
from abc import ABC, abstractmethod
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar, Generic, TypeVar, cast

import torch
from fairseq2.assets import AssetCard
from fairseq2.checkpoint import ModelMetadataDumper
from fairseq2.data.tokenizers import Tokenizer, load_tokenizer
from fairseq2.datasets import SyncMode
from fairseq2.logging import log
from fairseq2.metrics import Mean, MetricBag, Sum
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn.fsdp import FSDPWrapper, to_fsdp
from fairseq2.recipe.base import Recipe, RecipeContext
from fairseq2.recipe.cli import main as fairseq2_recipe_main
from fairseq2.recipe.config import (
    ADAMW_OPTIMIZER,
    COSINE_ANNEALING_LR,
    AdamWConfig,
    CommonSection,
    CosineAnnealingLRConfig,
    DatasetSection,
    GangSection,
    LRSchedulerSection,
    OptimizerSection,
    ReferenceModelSection,
    TrainerSection,
)
from fairseq2.recipe.error import RecipeError
from fairseq2.recipe.evaluator import EvalUnit
from fairseq2.recipe.trainer import TrainUnit
from fairseq2.utils.validation import ValidationResult
from torch import Tensor
from torch.distributed.fsdp import FSDPModule
from torch.nn import Module, ModuleList
from typing_extensions import final, override

from speechmapper_plugin.data.feature_store import FeatureStore
from speechmapper_plugin.data.usability import (
    feature_store_problem,
    store_speech_features,
)
from speechmapper_plugin.datasets.batching import SpeechBatch, SpeechReadOptions
from speechmapper_plugin.datasets.skips import SkipReport
from speechmapper_plugin.datasets.waveform_reader import WaveformReadOptions
from speechmapper_plugin.input_checks import finite_rows
from speechmapper_plugin.llm import (
    ChatTemplate,
    TargetTokens,
    TranscriptNormalization,
    chat_template_for_card,
    resolve_target_tokens,
    retrieve_llm_card,
)
from speechmapper_plugin.losses import EmbeddingMSELoss
from speechmapper_plugin.models.adapters import (
    PROJECTOR_CLASSES,
    AnyProjector,
    projector_family,
)
from speechmapper_plugin.validation import check_positive_fields

DEFAULT_LLM_CARD = "speechmapper_llama3_1_8b_instruct"
"""The frozen LLM the inference recipes default to (the paper's Llama-3.1-8B-Instruct)."""


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

    def train_read_options(
        self, common: CommonSection, trainer: TrainerSection
    ) -> SpeechReadOptions:
        """The training split's reads: seeded by the run, accumulated as the
        trainer accumulates gradients."""
        return self.read_options(
            seed=common.seed,
            train=True,
            num_accumulate=trainer.grad_accumulation.num_batches,
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


def record_speech_features(
    projector: AnyProjector, stores: Sequence[FeatureStore]
) -> None:
    """Records in the projector config the speech features its training and
    validation stores hold (encoder card, layer, LayerNorm), so that later
    stages and inference use the same; call it before
    :func:`record_target_llm`, which writes the checkpoint card.

    :raises RecipeError: if two stores hold different features, or a store
        holds features other than those the projector was trained on.
    """
    first: FeatureStore | None = None
    for store in stores:
        if first is None:
            first = store
            continue
        a, b = store_speech_features(first), store_speech_features(store)
        if a.differences(b):
            raise RecipeError(
                f"The feature stores {first.path} and {store.path} hold different features: {a.describe()} and {b.describe()}. A projector learns one encoder layer's features; extract every split with the same `model.name`, `features.layer` and `features.layer_norm`."
            )

    for store in stores:
        problem = feature_store_problem(store, projector.config)
        if problem is not None:
            raise RecipeError(problem)

    if first is not None:
        projector.config = replace(
            projector.config, speech_features=store_speech_features(first)
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


# The training stages (stage 1 and stage 2): their shared config sections,
# model and target lookups, and their criterion and units.


def ddp_trainer() -> TrainerSection:
    """Both stages' trainer: DDP, gradients clipped at norm 1."""
    return TrainerSection(data_parallelism="ddp", max_grad_norm=1.0)


def adamw_optimizer(lr: float) -> OptimizerSection:
    """Both stages' optimizer: AdamW with the paper's betas and weight decay."""
    return OptimizerSection(
        name=ADAMW_OPTIMIZER,
        config=AdamWConfig(lr=lr, betas=(0.9, 0.98), weight_decay=0.01),
    )


def cosine_lr_scheduler(
    num_warmup_steps: int, final_lr_scale: float
) -> LRSchedulerSection:
    """Both stages' schedule: warm-up, then cosine annealing."""
    return LRSchedulerSection(
        name=COSINE_ANNEALING_LR,
        config=CosineAnnealingLRConfig(
            num_warmup_steps=num_warmup_steps, final_lr_scale=final_lr_scale
        ),
    )


@dataclass(kw_only=True)
class TranscriptTargetsSection:
    """How a transcript becomes MSE target embeddings: the pad token and the
    transcript-tokenisation policy. Stage 1 (``target_llm``) and stage 2
    (``target_llm``, the LLM itself is ``llm.name``) have this same section, so
    that stage 2's MSE term regresses onto the targets stage 1 trained on: give
    both stages the same values."""

    pad_token: str | None = None
    """The token whose embedding pads the targets; default: the card's
    ``speechmapper_pad_token``, else the tokenizer's pad token. The paper pads
    with "a pad token" without naming it; Llama 3.1's card names
    ``<|finetune_right_pad_id|>``, whose row may be untrained (the recipe logs
    its norm, warns below 0.1 x the median row norm and refuses to start below
    0.01 x). Another token's row, e.g. ``<|eot_id|>``, is the alternative."""

    allow_weak_pad_row: bool = False
    """Train on a pad row below 0.01 x the median row norm (an untrained,
    all-zero or nearly zero row) instead of refusing to start; the run only
    warns then."""

    transcript_normalization: TranscriptNormalization = "as_given"
    """How transcripts are written before tokenisation, wherever one becomes a
    target: stage 1's and stage 2's MSE targets, and stage 2's CE response when
    that response is the transcript (ASR examples, ``response_is_transcript``),
    so CE and MSE train on one text. ``as_given``, ``lowercase`` or
    ``sentence_case`` (see :mod:`speechmapper_plugin.llm.transcripts`); the
    paper configs use ``sentence_case`` for LibriSpeech's upper-case
    transcripts."""

    add_bos: bool = False
    """Prepend the BOS token to transcripts."""

    add_eos: bool = False
    """Append the EOS token to transcripts."""


def load_target_tokens(
    section: TranscriptTargetsSection, card_name: str
) -> TargetTokens:
    """The MSE targets' tokens (pad token and transcript policy) of either
    stage, as the section says; stage 1 then reads the table, stage 2 takes
    its loaded LLM's."""
    try:
        return resolve_target_tokens(
            card_name,
            pad_token=section.pad_token,
            add_bos=section.add_bos,
            add_eos=section.add_eos,
            normalization=section.transcript_normalization,
            allow_weak_pad_row=section.allow_weak_pad_row,
        )
    except ValueError as ex:
        raise RecipeError(str(ex)) from None


def get_projector(context: RecipeContext) -> AnyProjector:
    """The trained model: the SpeechMapper projector or an adapter."""
    model = context.get_model()
    if not isinstance(model, PROJECTOR_CLASSES):
        raise RecipeError(
            f"The model must be a SpeechMapper projector (`speechmapper`) or an adapter (`speech_adapter`), but is a {type(model).__name__}."
        )
    return model  # type: ignore[return-value]


RowBatchT = TypeVar("RowBatchT", bound=SpeechBatch)


def drop_non_finite_rows(batch: RowBatchT) -> tuple[RowBatchT, int]:
    """Removes rows whose features hold NaN or inf; returns how many."""
    finite = finite_rows(batch.features)
    num_bad = int((~finite).sum())
    if num_bad == 0:
        return batch, 0
    return batch.select(finite), num_bad


class StageCriterion(ABC, Generic[RowBatchT]):
    """A stage's loss and metrics on a batch, called by its training and its
    validation units alike (as fairseq2's wav2vec2 ASR criterion).

    What both stages do is done here: rows with non-finite features are left
    out and counted as ``num_skipped_non_finite``, a batch with no row left
    scores a zero loss that still reaches every parameter, and the loss and
    the examples are logged. A stage scores the rest (:meth:`_score`).
    """

    def __init__(self, model: Module, *, has_pad_part: bool = True) -> None:
        """:param has_pad_part: the MSE targets have pad positions. Not so for
        an adapter trained one output per token (stage 1's per-token mode):
        it never updates ``mse_pad``, which is then not registered (no
        ``mse_pad: 0`` in its log lines, no torchmetrics warning)."""
        self._model = model
        self._has_pad_part = has_pad_part

    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        """The loss, the examples, the rows skipped as non-finite and the
        parts of the stage-1 MSE (both stages have it)."""
        metric_bag.add("loss", Mean())
        metric_bag.add("num_examples", Sum())
        metric_bag.add("mse_word", Mean())
        if self._has_pad_part:
            metric_bag.add("mse_pad", Mean())
        metric_bag.add("num_skipped_non_finite", Sum())

    def __call__(self, batch: RowBatchT, metric_bag: MetricBag) -> Tensor:
        """The batch's loss, a mean over its rows."""
        batch, num_bad = drop_non_finite_rows(batch)
        metric_bag.get("num_skipped_non_finite", Sum).update(num_bad)

        if batch.batch_size == 0:
            # A zero loss connected to every parameter: a rank whose batch is
            # empty still runs backward, keeping DDP's all-reduce in step.
            return torch.stack([p.sum() for p in self._model.parameters()]).sum() * 0.0

        loss = self._score(batch, metric_bag)

        with torch.inference_mode():
            n = batch.batch_size
            metric_bag.get("loss", Mean).update(loss.detach(), weight=n)
            metric_bag.get("num_examples", Sum).update(n)

        return loss

    @abstractmethod
    def _score(self, batch: RowBatchT, metric_bag: MetricBag) -> Tensor:
        """The loss of a batch of finite rows; updates the stage's own metrics."""

    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        pass


@torch.inference_mode()
def update_mse_metrics(metric_bag: MetricBag, mse: EmbeddingMSELoss) -> None:
    """Each part weighted by its positions (``mse_pad`` only where there are)."""
    metric_bag.get("mse_word", Mean).update(
        mse.mse_word.detach(), weight=max(mse.num_word_positions, 1)
    )
    if mse.num_pad_positions > 0 and "mse_pad" in metric_bag.metrics:
        metric_bag.get("mse_pad", Mean).update(
            mse.mse_pad.detach(), weight=mse.num_pad_positions
        )


@final
class CriterionTrainUnit(TrainUnit[RowBatchT]):
    """Trains on a stage's criterion."""

    def __init__(self, criterion: StageCriterion[RowBatchT]) -> None:
        self._criterion = criterion

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        self._criterion.prepare_metric_bag(metric_bag)

    @override
    def process_batch(
        self, batch: RowBatchT, metric_bag: MetricBag
    ) -> tuple[Tensor, int | None]:
        # The loss is a mean; the trainer then averages over accumulated batches.
        return self._criterion(batch, metric_bag), None

    @override
    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        self._criterion.process_metric_values(values)


@final
class CriterionEvalUnit(EvalUnit[RowBatchT]):
    """Validates a stage's criterion on one named split."""

    def __init__(self, criterion: StageCriterion[RowBatchT], name: str) -> None:
        self._criterion = criterion
        self._name = name

    @property
    @override
    def name(self) -> str | None:
        return self._name

    @override
    def prepare_metric_bag(self, metric_bag: MetricBag) -> None:
        self._criterion.prepare_metric_bag(metric_bag)

    @override
    @torch.inference_mode()
    def process_batch(self, batch: RowBatchT, metric_bag: MetricBag) -> None:
        self._criterion(batch, metric_bag)

    @override
    def process_metric_values(self, values: MutableMapping[str, object]) -> None:
        self._criterion.process_metric_values(values)


def recipe_main(recipe: Recipe, description: str) -> None:
    """Runs ``recipe`` with fairseq2's recipe command line, whose ``--help``
    first says what the recipe does (fairseq2's parser has no description)."""
    if {"-h", "--help"} & set(sys.argv[1:]):
        print(description.strip() + "\n", flush=True)
    fairseq2_recipe_main(recipe)


# The inference recipes (extract_features, generate, evaluate, eet).


@dataclass(kw_only=True)
class InferenceRunSections:
    """The gang and common sections of the inference recipes."""

    gang: GangSection = field(default_factory=GangSection)

    common: CommonSection = field(
        default_factory=lambda: CommonSection(no_sweep_dir=True)
    )
    """``no_sweep_dir`` is on so that a rerun (with any world size) finds the
    same output directory and resumes."""


def check_llm_card(result: ValidationResult, llm: ReferenceModelSection) -> None:
    """The LLM comes from its card, never from ``path``: the card names its
    tokenizer and chat template."""
    if llm.name is None:
        result.add_error(
            "`llm.name` must name the LLM's asset card (its tokenizer and chat template come from the card)."
        )


def load_llm_text_side(
    llm: ReferenceModelSection,
) -> tuple[AssetCard, ChatTemplate, Tokenizer]:
    """The LLM's card, chat template and tokenizer: what the inference recipes
    check and encode prompts with before any weight is loaded.

    :raises RecipeError: if the card is not an LLM's, or names no template.
    """
    if llm.name is None:
        raise RecipeError("`llm.name` must name the LLM's asset card.")
    try:
        card = retrieve_llm_card(llm.name)
        return card, chat_template_for_card(card), load_tokenizer(card)
    except ValueError as ex:
        raise RecipeError(str(ex)) from None


def check_read_options(
    result: ValidationResult, options: WaveformReadOptions, section: str
) -> None:
    """Every option of the audio reader must be positive."""
    names = [f.name for f in fields(WaveformReadOptions)]
    check_positive_fields(result, options, names, section=section)


class AlternativeInputs:
    """A config section of alternative inputs (``CHOICES``: field -> what it
    is), of which a run needs exactly one. Two given is an error of the config
    (:meth:`validate`); none given is one of the run (:meth:`require`, when
    the recipe starts), so that ``--dump-config`` works without inputs."""

    CHOICES: ClassVar[Mapping[str, str]]

    def _problem(self, *, required: bool) -> str | None:
        given = [name for name in self.CHOICES if getattr(self, name) is not None]
        if len(given) == 1 or (not given and not required):
            return None
        listed = " and ".join(
            f"`input.{name}` ({what})" for name, what in self.CHOICES.items()
        )
        return f"Give exactly one of {listed}."

    def validate(self) -> ValidationResult:
        result = ValidationResult()
        problem = self._problem(required=False)
        if problem is not None:
            result.add_error(problem)
        return result

    def require(self) -> None:
        """:raises RecipeError: if no input is given (or two)."""
        problem = self._problem(required=True)
        if problem is not None:
            raise RecipeError(problem)
