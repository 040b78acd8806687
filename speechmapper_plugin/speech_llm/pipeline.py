"""The user-facing inference API: audio + instruction -> the LLM's answer.

SFM (frozen speech encoder) -> projector -> speech embeddings spliced into the
LLM's chat prompt at ``<speech>`` -> generation. The speech encoder runs
without frame averaging and the projector averages its input itself
(``pre_averaged=False``), so the projector's own ``frame_averaging`` is the
only one that applies; features read from a feature store are already
averaged and go through :meth:`SpeechMapperPipeline.run` with ``features=True``.

Everything that can be wrong with the inputs (the components not fitting
together, an instruction without its placeholder, audio that is unreadable,
too short or too long) is checked before the speech encoder or the LLM run;
a batch call either raises for the first unusable input or, with
``on_error="skip"``, answers the others and returns a :class:`SkippedInput`
(the error, with its reason code) in place of each unusable one.
"""

from __future__ import annotations

import copy
import enum
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import (
    Any,
    Final,
    Generic,
    Literal,
    Required,
    TypeAlias,
    TypedDict,
    TypeVar,
    overload,
)

import torch
from fairseq2.data.tokenizers import Tokenizer
from fairseq2.device import Device
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from torch import Tensor
from typing_extensions import Unpack

from speechmapper_plugin.data.instructions import check_placeholder
from speechmapper_plugin.data.reasons import NON_FINITE_FEATURES
from speechmapper_plugin.data.usability import (
    Unusable,
    audio_length_problem,
    prompt_problem,
    speech_positions,
)
from speechmapper_plugin.generation import (
    DecodingStep,
    GenerationConfig,
    GenerationResult,
    StepCallback,
    generate_from_embeddings,
)
from speechmapper_plugin.generation.inputs import model_dtype_and_device
from speechmapper_plugin.generation.single import CancelCheck
from speechmapper_plugin.input_checks import is_finite
from speechmapper_plugin.llm import (
    ChatTemplate,
    SpeechPrompt,
    chat_template_for_card,
    encode_speech_prompt,
    stop_token_ids,
)
from speechmapper_plugin.llm.assemble import assemble_inputs
from speechmapper_plugin.llm.embeddings import embed_token_ids
from speechmapper_plugin.llm.speech_prompt import no_placeholder_problem
from speechmapper_plugin.llm.tokens import create_text_decoder
from speechmapper_plugin.models.adapters import AnyProjector
from speechmapper_plugin.models.sfm import (
    SfmEncoder,
    create_sfm_extractor,
)
from speechmapper_plugin.padding import pad_sequences
from speechmapper_plugin.speech_llm.audio_inputs import (
    AudioInput,
    AudioInputError,
    describe_input,
    is_batch,
    load_input,
    unusable_speech_error,
)
from speechmapper_plugin.speech_llm.compatibility import (
    check_components,
    component_problems,
    resolve_speech_features,
    tokenizer_problems,
)
from speechmapper_plugin.speech_llm.pipeline_cards import load_components
from speechmapper_plugin.speech_llm.pipeline_result import (
    OnError,
    PipelineResult,
    SkippedInput,
)
from speechmapper_plugin.speech_llm.task_prompts import TaskPrompts
from speechmapper_plugin.speech_llm.text_stream import (
    AnswerStream,
    TextDeltas,
    TokenSink,
)

Instructions = str | Sequence[str]
"""One instruction for every input, or one per input."""

_Audio = TypeVar("_Audio", bound=AudioInput)

BatchInput: TypeAlias = list[_Audio] | tuple[_Audio, ...]
"""Several inputs: a list or tuple of one kind of :data:`AudioInput` or a mix
(generic, so that ``list[Path]`` is one: a ``list`` is invariant)."""

Answer: TypeAlias = str | SkippedInput
"""A text, or with ``on_error="skip"`` why an input has none."""

Texts: TypeAlias = Answer | list[str] | list[Answer]
"""What a task method returns (its overloads say which for which input)."""

TokensCallback: TypeAlias = Callable[[dict[int, int]], None]
"""Takes the tokens one decoding step added to answers, by input index."""


class PipelineOptions(TypedDict, total=False):
    """The constructor's settings that :meth:`SpeechMapperPipeline.from_cards`
    passes on (see the constructor)."""

    sfm_layer: int | None
    sfm_layer_norm: bool | None
    allow_feature_mismatch: bool
    sfm_dtype: torch.dtype
    device: Device | str | None
    generation: GenerationConfig | None
    system_prompt: str | None
    prompts: TaskPrompts | None
    batch_size: int
    prompt_cache_size: int


class _Keep(enum.Enum):
    KEEP = enum.auto()


KEEP: Final = _Keep.KEEP
"""For :meth:`SpeechMapperPipeline.with_options`: keep this setting."""


class CallOptions(TypedDict, total=False):
    """The keywords every task method and :meth:`SpeechMapperPipeline.run` take."""

    sample_rate: int | None
    """The rate of waveform arrays (default 16 kHz); files carry their own."""

    batch_size: int | None
    """Inputs per forward pass (default: the pipeline's ``batch_size``)."""


class TaskOptions(CallOptions, total=False):
    on_error: OnError
    """``"raise"`` (the default) or ``"skip"``; see :meth:`SpeechMapperPipeline.run`."""


class Raising(CallOptions, total=False):
    """:class:`TaskOptions` of a call that raises: its batch gives only texts."""

    on_error: Literal["raise"]


class Skipping(CallOptions):
    """:class:`TaskOptions` naming ``on_error``: a batch may hold skipped inputs."""

    on_error: Required[OnError]


class SpeechMapperPipeline:
    """Speech in, text out: transcription, translation, spoken QA or any instruction.

    ``audio`` is a path, the bytes of an encoded file, or a 1-D float waveform
    (numpy array or tensor, in [-1, 1]) at 16 kHz (``sample_rate=`` for other
    rates; it is resampled). A list or tuple of those is a batch: the methods
    then return a list, in input order, and ``on_error="skip"`` puts a
    :class:`SkippedInput` in place of an unusable input instead of raising
    for the whole batch. Generation is greedy unless
    ``generation.beam_size > 1``; greedy answers do not depend on how inputs
    are batched (up to float rounding).

    The modules are moved to ``device`` (default: the LLM's) and put in eval
    mode; nothing is trained or changed otherwise.

    :param sfm: The speech encoder the projector was trained on (SeamlessM4T-v2
        or Whisper).
    :param projector: The SpeechMapper projector or an adapter of the
        ``speech_adapter`` family (Verdini et al.); for the variable-length
        kinds (``cif``, ``ctc_compression``) the prompt gets as many speech
        positions as the adapter emits for each input.
    :param llm_name: The LLM's asset card; checked against the projector's
        ``target_llm``, and the source of the chat template.
    :param template: The chat template; default: the card's
        ``speechmapper_chat_template``.
    :param sfm_layer: 1-based encoder layer; default: the layer the projector
        was trained on (its ``speech_features``), else (a projector that does
        not record it) the encoder config's ``output_layer``, with a warning.
    :param sfm_layer_norm: Apply the encoder's final LayerNorm; default: as
        the projector was trained, else the config's ``output_layer_norm``.
    :param allow_feature_mismatch: Run a layer or LayerNorm choice other than
        the projector's record (logged) instead of refusing it.
    :param sfm_dtype: The speech encoder's compute dtype (fp32 reproduces the
        reference implementation; see :class:`SpeechFeatureExtractor`).
    :param prompts: The instruction templates of :meth:`transcribe`,
        :meth:`translate` and :meth:`answer`.
    :param batch_size: Inputs per forward pass (inputs are grouped by length).
    :param prompt_cache_size: Encoded instructions kept (least recently used
        dropped first): a server's chat instructions are mostly unique.
    :raises IncompatibleComponentsError: if the projector was trained for
        another LLM or on other speech features, or widths, chat template or
        vocabulary do not match.
    """

    def __init__(
        self,
        sfm: SfmEncoder,
        projector: AnyProjector,
        llm: TransformerLM,
        tokenizer: Tokenizer,
        *,
        llm_name: str,
        template: ChatTemplate | None = None,
        sfm_layer: int | None = None,
        sfm_layer_norm: bool | None = None,
        allow_feature_mismatch: bool = False,
        sfm_dtype: torch.dtype = torch.float32,
        device: Device | str | None = None,
        generation: GenerationConfig | None = None,
        system_prompt: str | None = None,
        prompts: TaskPrompts | None = None,
        batch_size: int = 8,
        prompt_cache_size: int = 4096,
    ) -> None:
        self.generation = generation or GenerationConfig()
        self.generation.check()

        self.prompts = prompts or TaskPrompts()
        self.prompts.check()

        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive, but is {batch_size}.")
        self._prompts = _LruCache[str, SpeechPrompt](prompt_cache_size)

        _check_system_prompt(system_prompt)

        if template is None:
            template = chat_template_for_card(llm_name)

        check_components(
            component_problems(
                projector.config,
                llm_name=llm_name,
                llm_embed_dim=llm.model_dim,
                sfm_feature_dim=sfm.model_dim,
            )
            + tokenizer_problems(
                tokenizer,
                template,
                llm_name=llm_name,
                vocab_size=llm.final_proj.output_dim,
            )
        )

        _, sfm_layer, sfm_layer_norm = resolve_speech_features(
            projector.config,
            layer=sfm_layer,
            layer_norm=sfm_layer_norm,
            allow_mismatch=allow_feature_mismatch,
        )

        _, llm_device = model_dtype_and_device(llm)
        self.device = torch.device(device) if device is not None else llm_device

        self.llm = llm.to(self.device).eval()
        self.projector = projector.to(self.device).eval()
        self.extractor = create_sfm_extractor(
            sfm,
            layer=sfm_layer,
            layer_norm=sfm_layer_norm,
            frame_averaging=1,
            dtype=sfm_dtype,
            device=self.device,
        )

        self.tokenizer = tokenizer
        self.template = template
        self.llm_name = llm_name
        self.system_prompt = system_prompt
        self.batch_size = batch_size

        self._stop_ids = stop_token_ids(tokenizer, template)
        self._decoder = create_text_decoder(tokenizer)
        self._projector_dtype = next(projector.parameters()).dtype

    def with_options(
        self,
        *,
        generation: GenerationConfig | _Keep = KEEP,
        system_prompt: str | None | _Keep = KEEP,
    ) -> SpeechMapperPipeline:
        """This pipeline with other generation settings or system prompt,
        sharing its loaded models (nothing is loaded or copied but settings),
        e.g. one per request of a server.

        :param system_prompt: ``None``: no system prompt.
        :raises ValueError: for a generation config out of range or a system
            prompt holding ``<speech>``.
        """
        variant = copy.copy(self)
        if not isinstance(generation, _Keep):
            generation.check()
            variant.generation = generation
        if not isinstance(system_prompt, _Keep) and system_prompt != self.system_prompt:
            _check_system_prompt(system_prompt)
            variant.system_prompt = system_prompt
            # Its own prompt cache: this one's prompts hold another system prompt.
            variant._prompts = _LruCache(self._prompts.max_size)
        return variant

    @property
    def cached_prompts(self) -> int:
        """Encoded instructions held now (at most ``prompt_cache_size``)."""
        return len(self._prompts)

    @classmethod
    def from_cards(
        cls,
        sfm: str | None,
        projector: str,
        llm: str,
        *,
        dtype: torch.dtype = torch.float32,
        **options: Unpack[PipelineOptions],
    ) -> SpeechMapperPipeline:
        """Load the three components from their asset cards; ``options`` are
        the constructor's (``device`` defaults to fairseq2's current device,
        CUDA if available).

        The cards' configurations, the chat template and the tokenizer are
        checked against each other before any model weights are loaded.

        :param sfm: The speech encoder's card; ``None``: the one the projector
            was trained on (its card's ``speech_features``). Another one than
            that is refused unless ``allow_feature_mismatch=True``.

        :param dtype: The dtype of the projector and the LLM (e.g.
            ``torch.bfloat16`` on GPUs).
        """
        parts = load_components(
            sfm,
            projector,
            llm,
            device=options.get("device"),
            dtype=dtype,
            sfm_dtype=options.get("sfm_dtype", torch.float32),
            sfm_layer=options.get("sfm_layer"),
            sfm_layer_norm=options.get("sfm_layer_norm"),
            allow_feature_mismatch=options.get("allow_feature_mismatch", False),
        )

        return cls(
            parts.sfm,
            parts.projector,
            parts.llm,
            parts.tokenizer,
            llm_name=parts.llm_name,
            template=parts.template,
            **options,
        )

    # -- task methods --------------------------------------------------------
    # One input gives a str, a list or tuple a list in input order; a batch
    # with ``on_error="skip"`` has a :class:`SkippedInput` where an input was
    # unusable. ``options``: ``on_error``, ``sample_rate``, ``batch_size``
    # (see :meth:`run`).

    @overload
    def transcribe(self, audio: AudioInput, **options: Unpack[CallOptions]) -> str: ...
    @overload
    def transcribe(
        self, audio: BatchInput[_Audio], **options: Unpack[Raising]
    ) -> list[str]: ...
    @overload
    def transcribe(
        self, audio: BatchInput[_Audio], **options: Unpack[Skipping]
    ) -> list[Answer]: ...

    def transcribe(
        self, audio: AudioInput | BatchInput[Any], **options: Unpack[TaskOptions]
    ) -> Texts:
        """What is said, with :attr:`prompts.asr` as the instruction."""
        return self._texts(audio, self.prompts.transcription(), options)

    @overload
    def translate(
        self, audio: AudioInput, target_lang: str, **options: Unpack[CallOptions]
    ) -> str: ...
    @overload
    def translate(
        self, audio: BatchInput[_Audio], target_lang: str, **options: Unpack[Raising]
    ) -> list[str]: ...
    @overload
    def translate(
        self, audio: BatchInput[_Audio], target_lang: str, **options: Unpack[Skipping]
    ) -> list[Answer]: ...

    def translate(
        self,
        audio: AudioInput | BatchInput[Any],
        target_lang: str,
        **options: Unpack[TaskOptions],
    ) -> Texts:
        """A translation into ``target_lang``: a code of
        :data:`~speechmapper_plugin.data.instructions.prompts.LANGUAGE_NAMES`
        (``"de"``) or a language name (``"German"``).

        :raises ValueError: for an unknown code, listing the known ones.
        """
        return self._texts(audio, self.prompts.translation(target_lang), options)

    @overload
    def answer(
        self, audio: AudioInput, question: str, **options: Unpack[CallOptions]
    ) -> str: ...
    @overload
    def answer(
        self,
        audio: BatchInput[_Audio],
        question: Instructions,
        **options: Unpack[Raising],
    ) -> list[str]: ...
    @overload
    def answer(
        self,
        audio: BatchInput[_Audio],
        question: Instructions,
        **options: Unpack[Skipping],
    ) -> list[Answer]: ...

    def answer(
        self,
        audio: AudioInput | BatchInput[Any],
        question: Instructions,
        **options: Unpack[TaskOptions],
    ) -> Texts:
        """The answer to a text ``question`` about the audio (one question for
        all inputs, or one per input)."""
        if isinstance(question, str):
            instructions: Instructions = self.prompts.question(question)
        else:
            instructions = [self.prompts.question(q) for q in question]

        return self._texts(audio, instructions, options)

    @overload
    def generate(
        self, audio: AudioInput, instruction: str, **options: Unpack[CallOptions]
    ) -> str: ...
    @overload
    def generate(
        self,
        audio: BatchInput[_Audio],
        instruction: Instructions,
        **options: Unpack[Raising],
    ) -> list[str]: ...
    @overload
    def generate(
        self,
        audio: BatchInput[_Audio],
        instruction: Instructions,
        **options: Unpack[Skipping],
    ) -> list[Answer]: ...

    def generate(
        self,
        audio: AudioInput | BatchInput[Any],
        instruction: Instructions,
        **options: Unpack[TaskOptions],
    ) -> Texts:
        """The answer to any instruction; it must contain ``<speech>`` exactly
        once, where the speech goes (e.g. ``"Summarise this talk.\\n<speech>"``)."""
        return self._texts(audio, instruction, options)

    def _texts(
        self,
        audio: AudioInput | BatchInput[Any],
        instructions: Instructions,
        options: TaskOptions,
    ) -> Texts:
        results = self.run(audio, instructions, **options)

        texts = [r if isinstance(r, SkippedInput) else r.text for r in results]

        return texts if is_batch(audio) else texts[0]

    # -- the one way to run --------------------------------------------------

    @overload
    def run(
        self,
        inputs: AudioInput | BatchInput[Any],
        instructions: Instructions,
        *,
        features: bool = ...,
        pre_averaged: bool = ...,
        names: Sequence[str] | None = ...,
        on_tokens: TokensCallback | None = ...,
        cancelled: CancelCheck | None = ...,
        **options: Unpack[Raising],
    ) -> list[PipelineResult]: ...

    @overload
    def run(
        self,
        inputs: AudioInput | BatchInput[Any],
        instructions: Instructions,
        *,
        features: bool = ...,
        pre_averaged: bool = ...,
        names: Sequence[str] | None = ...,
        on_tokens: TokensCallback | None = ...,
        cancelled: CancelCheck | None = ...,
        **options: Unpack[Skipping],
    ) -> list[PipelineResult | SkippedInput]: ...

    def run(
        self,
        inputs: AudioInput | BatchInput[Any],
        instructions: Instructions,
        *,
        on_error: OnError = "raise",
        features: bool = False,
        pre_averaged: bool = True,
        names: Sequence[str] | None = None,
        on_tokens: TokensCallback | None = None,
        cancelled: CancelCheck | None = None,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> list[PipelineResult] | list[PipelineResult | SkippedInput]:
        """Full results (text, token ids, stop reason, prompt, number of speech
        positions) for one input or a batch; always a list, in input order.

        Instructions are checked, then every input is loaded, then checked, and
        only then do the models run, on batches of ``batch_size`` inputs of
        similar length.

        :param inputs: Audio (see the class), or with ``features=True``
            speech-encoder features, ``[frames, dim]`` each (e.g. from a
            :class:`FeatureStore`).
        :param on_error: ``"raise"``: an unusable input raises its
            :class:`AudioInputError` (naming it) before any model runs.
            ``"skip"``: it gets a :class:`SkippedInput` (its error, with the
            reason code) in its place and the others are answered.
        :param pre_averaged: The features were already averaged
            ``projector.config.frame_averaging``:1 (feature stores' are).
        :param names: How errors name the inputs (default: their position and
            what they are).
        :param on_tokens: Called (in this thread) after every decoding step
            with the tokens it added to answers, by input index: streaming
            (see :meth:`stream`). Greedy decoding and sampling only: beam
            search knows which tokens stay only when it ends, and never calls it.
        :param cancelled: Asked (in this thread) after every decoding step,
            by input index, whether each input still decoding is still wanted
            (a server's client may go away): a cancelled one stops at once
            and its result has the tokens it had, ``stop_reason="cancelled"``;
            the others go on in a smaller batch. Greedy decoding and sampling
            only: beam search never asks it.
        """
        items = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if not items:
            raise ValueError("The batch of inputs is empty.")

        batch_size = self.batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive, but is {batch_size}.")

        per_item = (
            [instructions] * len(items)
            if isinstance(instructions, str)
            else list(instructions)
        )
        if len(per_item) != len(items):
            raise ValueError(
                f"Got {len(items)} audio inputs, but {len(per_item)} instructions; give one instruction for all or one per input."
            )
        for i, instruction in enumerate(per_item):
            where = (
                "The instruction"
                if isinstance(instructions, str)
                else f"Instruction {i}"
            )
            self.encode_prompt(instruction, where=where)

        names = _names(names, items, features=features, batch=is_batch(inputs))
        if not features:
            pre_averaged = False

        speech = [
            _attempt(on_error, self._load, item, name, features, sample_rate)
            for item, name in zip(items, names, strict=True)
        ]
        ready = [
            seq
            if isinstance(seq, AudioInputError)
            else _attempt(
                on_error, self._check, seq, instruction, name, features, pre_averaged
            )
            for seq, instruction, name in zip(speech, per_item, names, strict=True)
        ]

        # Longest first (samples or frames): little padding per batch; each
        # batch runs in input order, and the results go back in input order.
        usable = {i: r for i, r in enumerate(ready) if isinstance(r, _Ready)}
        order = sorted(usable, key=lambda i: -usable[i].speech.size(0))

        results: dict[int, PipelineResult] = {}
        for start in range(0, len(order), batch_size):
            chunk = sorted(order[start : start + batch_size])
            outputs = self._generate(
                [usable[i] for i in chunk],
                features,
                pre_averaged,
                None if on_tokens is None else _by_input(chunk, on_tokens),
                None if cancelled is None else partial(_cancelled, chunk, cancelled),
            )
            results.update(zip(chunk, outputs, strict=True))

        return [
            SkippedInput(r) if isinstance(r, AudioInputError) else results[i]
            for i, r in enumerate(ready)
        ]

    def stream(
        self, audio: AudioInput, instruction: str, *, sample_rate: int | None = None
    ) -> AnswerStream:
        """The answer to one input as pieces of text while it is generated
        (each piece the text one or more new tokens add): iterate it, or
        close it (``with``) to stop generating. Joined, the pieces are
        :meth:`generate`'s answer; ``stream.result`` holds the full
        :class:`PipelineResult` once the iteration ends. With beam search
        (``generation.beam_size > 1``), whose tokens are known only at its
        end, the answer comes as one piece at the end.

        The input is loaded and checked here; the models run in a thread.

        :raises AudioInputError: for unusable audio (before any model runs).
        :raises InstructionFormatError: if ``instruction`` does not contain
            ``<speech>`` exactly once.
        """
        self.encode_prompt(instruction)
        where = describe_input(audio, None)
        speech = self._load(audio, where, False, sample_rate)
        ready = self._check(speech, instruction, where, False, False)

        def generate(sink: TokenSink, closed: Callable[[], bool]) -> PipelineResult:
            (result,) = self._generate(
                [ready],
                False,
                False,
                _by_input([0], lambda t: sink(t[0])),
                lambda _: closed(),
            )
            return result

        return AnswerStream(generate, self.text_deltas())

    def text_deltas(self) -> TextDeltas:
        """A new incremental decoder of one answer's tokens into the pieces
        of its text, as this pipeline decodes answers."""
        return TextDeltas(create_text_decoder(self.tokenizer))

    def encode_prompt(
        self, instruction: str, *, where: str = "The instruction"
    ) -> SpeechPrompt:
        """The token ids around the speech for ``instruction`` (cached).

        :raises InstructionFormatError: (a ``ValueError``) if ``instruction``
            does not contain ``<speech>`` exactly once.
        """
        prompt = self._prompts.get(instruction)
        if prompt is None:
            check_placeholder(instruction, where)

            prompt = encode_speech_prompt(
                self.tokenizer, self.template, instruction, self.system_prompt
            )
            self._prompts.put(instruction, prompt)

        return prompt

    @property
    def min_num_samples(self) -> int:
        """The shortest 16 kHz audio that yields one speech embedding
        (10480 samples, 0.655 s, for the paper's projector)."""
        frames = self.projector.config.min_input_frames()

        return self.extractor.min_num_samples_for_frames(frames)

    def check_audio(
        self, num_samples: int, instruction: str, *, where: str = "audio"
    ) -> int:
        """The number of speech embeddings for ``num_samples`` of 16 kHz audio
        (for ``cif`` and ``ctc_compression`` adapters the most they can emit:
        their real number depends on what is said); the checks of
        :mod:`speechmapper_plugin.data.usability`.

        :param where: Names the audio (and the instruction) in errors.
        :raises SpeechTooShortError: if it gives no speech embedding.
        :raises SpeechTooLongError: if the projector or the LLM cannot take it.
        :raises InstructionFormatError: if ``instruction`` does not contain
            ``<speech>`` exactly once.
        """
        too_short = audio_length_problem(
            num_samples,
            self.min_num_samples,
            gives="no speech frames for the LLM",
            needed_by="the speech encoder and the projector need",
        )
        if too_short is not None:
            raise unusable_speech_error(where, too_short)

        return self.check_features(
            self.extractor.num_frames(num_samples),
            instruction,
            pre_averaged=False,
            where=where,
        )

    def check_features(
        self,
        num_frames: int,
        instruction: str,
        *,
        pre_averaged: bool,
        where: str = "features",
    ) -> int:
        """:meth:`check_audio` for ``num_frames`` speech-encoder frames: exact
        for fixed-rate projectors, an upper bound for variable-length adapters
        (so the context check never lets through what cannot fit)."""
        config = self.projector.config

        positions = speech_positions(config, num_frames, pre_averaged=pre_averaged)
        if isinstance(positions, Unusable):
            raise unusable_speech_error(where, positions)

        prompt = self.encode_prompt(instruction, where=where)
        too_long = prompt_problem(
            config,
            len(prompt.prefix_ids),
            positions,
            len(prompt.suffix_ids),
            self.llm.max_seq_len,
        )
        if too_long is not None:
            raise unusable_speech_error(where, too_long)

        return positions

    # -- internals -----------------------------------------------------------

    def _load(
        self,
        item: AudioInput,
        where: str,
        features: bool,
        sample_rate: int | None,
    ) -> Tensor:
        """One input as the models take it: a mono 16 kHz waveform, or
        ``[frames, dim]`` features checked for their width and finiteness."""
        if not features:
            return load_input(item, where=where, sample_rate=sample_rate)

        input_dim = self.projector.config.input_dim
        if (
            not isinstance(item, Tensor)
            or item.dim() != 2
            or item.size(-1) != input_dim
        ):
            shape = tuple(item.shape) if isinstance(item, Tensor) else type(item)
            raise AudioInputError(
                where, f"expected features of shape [frames, {input_dim}], got {shape}."
            )

        if not is_finite(item):
            raise AudioInputError(
                where,
                "the features hold NaN or infinite values.",
                code=NON_FINITE_FEATURES,
            )

        return item

    def _check(
        self,
        speech: Tensor,
        instruction: str,
        where: str,
        features: bool,
        pre_averaged: bool,
    ) -> _Ready:
        """``speech`` with its prompt, if the projector and the LLM can take it."""
        if features:
            self.check_features(
                speech.size(0), instruction, pre_averaged=pre_averaged, where=where
            )
        else:
            self.check_audio(speech.numel(), instruction, where=where)

        return _Ready(speech, self.encode_prompt(instruction, where=where), instruction)

    def _generate(
        self,
        batch: Sequence[_Ready],
        features: bool,
        pre_averaged: bool,
        on_step: StepCallback | None = None,
        cancelled: CancelCheck | None = None,
    ) -> list[PipelineResult]:
        """One forward batch: speech encoder (for waveforms), projector, LLM."""
        with torch.inference_mode():
            if features:
                speech, lens_tensor = pad_sequences(
                    [seq.speech for seq in batch], device=self.device
                )
            else:
                speech, lens_tensor = self.extractor([seq.speech for seq in batch])
            lens = [int(n) for n in lens_tensor.tolist()]

            speech = speech.to(self.device, self._projector_dtype)
            embeds, embeds_layout = self.projector(
                speech, BatchLayout.of(speech, lens), pre_averaged=pre_averaged
            )
            # The lengths the projector reports: for variable-length adapters
            # the number of outputs it emitted, which only the forward pass knows.
            positions = list(embeds_layout.seq_lens)

            prompts = [seq.prompt for seq in batch]
            inputs = assemble_inputs(
                partial(embed_token_ids, self.llm),
                [p.prefix_ids for p in prompts],
                embeds,
                positions,
                [p.suffix_ids for p in prompts],
            )

            generations = generate_from_embeddings(
                self.llm,
                inputs.embeds,
                inputs.layout,
                stop_token_ids=self._stop_ids,
                config=self.generation,
                num_speech_positions=positions,
                on_step=on_step,
                cancelled=cancelled,
            )

        return [
            PipelineResult(
                text=self._text(generation),
                instruction=seq.instruction,
                prompt=seq.prompt,
                num_speech_positions=n,
                generation=generation,
            )
            for seq, generation, n in zip(batch, generations, positions, strict=True)
        ]

    def _text(self, generation: GenerationResult) -> str:
        tokens = torch.tensor(generation.tokens, dtype=torch.int64)

        return self._decoder(tokens).strip() if tokens.numel() else ""


@dataclass(frozen=True)
class _Ready:
    """An input that passed every check, with its prompt."""

    speech: Tensor
    prompt: SpeechPrompt
    instruction: str


def _names(
    names: Sequence[str] | None,
    items: Sequence[AudioInput],
    *,
    features: bool,
    batch: bool,
) -> list[str]:
    if names is not None:
        if len(names) != len(items):
            raise ValueError(f"Got {len(items)} inputs, but {len(names)} names.")
        return list(names)

    if features:
        return [f"features {i}" if batch else "features" for i in range(len(items))]

    return [describe_input(a, i if batch else None) for i, a in enumerate(items)]


def _by_input(indices: Sequence[int], on_tokens: TokensCallback) -> StepCallback:
    """A generation step callback calling ``on_tokens`` with the tokens the
    step added, by input index (``indices[example]``), if it added any."""

    def report(step: DecodingStep) -> None:
        tokens = {
            indices[example]: token
            for example, token in zip(step.examples, step.tokens, strict=True)
            if token is not None
        }
        if tokens:
            on_tokens(tokens)

    return report


def _cancelled(indices: Sequence[int], cancelled: CancelCheck, example: int) -> bool:
    """``cancelled`` asked by input index (``indices[example]``): a batch's
    :data:`CancelCheck`."""
    return cancelled(indices[example])


def _check_system_prompt(system_prompt: str | None) -> None:
    if system_prompt is not None:
        problem = no_placeholder_problem(system_prompt, "The system prompt")
        if problem is not None:
            raise ValueError(problem)


K = TypeVar("K")
V = TypeVar("V")


class _LruCache(Generic[K, V]):
    """At most ``max_size`` entries, the least recently used dropped first;
    thread-safe (a server encodes prompts in request threads while its worker
    runs a batch, which holds the prompts it checked)."""

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(
                f"`prompt_cache_size` must be positive, but is {max_size}."
            )
        self.max_size = max_size
        self._entries: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


T = TypeVar("T")


def _attempt(
    on_error: OnError, step: Callable[..., T], *args: object
) -> T | AudioInputError:
    """``step(*args)``; its :class:`AudioInputError` is raised, or with
    ``on_error="skip"`` returned in place of its result."""
    try:
        return step(*args)
    except AudioInputError as error:
        if on_error == "raise":
            raise
        return error
