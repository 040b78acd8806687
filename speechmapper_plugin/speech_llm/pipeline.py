"""The user-facing inference API: audio + instruction -> the LLM's answer.

SFM (frozen speech encoder) -> projector -> speech embeddings spliced into the
LLM's chat prompt at ``<speech>`` -> generation. The speech encoder runs
without frame averaging and the projector averages its input itself
(``pre_averaged=False``), so the projector's own ``frame_averaging`` is the
only one that applies; features read from a feature store are already
averaged and go through :meth:`SpeechMapperPipeline.run_features`.

Everything that can be wrong with the inputs (the components not fitting
together, an instruction without its placeholder, audio that is unreadable,
too short or too long) is checked before the speech encoder or the LLM run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import overload

import torch
from fairseq2.data.tokenizers import Tokenizer
from fairseq2.device import Device
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from speechmapper_plugin.data.instructions import check_placeholder
from speechmapper_plugin.data.reasons import NON_FINITE_FEATURES
from speechmapper_plugin.data.usability import (
    Unusable,
    audio_length_problem,
    prompt_problem,
    speech_positions,
)
from speechmapper_plugin.generation import (
    GenerationConfig,
    GenerationResult,
    generate_from_embeddings,
)
from speechmapper_plugin.generation.inputs import model_dtype_and_device
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
from speechmapper_plugin.models.adapters import AnyProjector, min_input_frames
from speechmapper_plugin.models.sfm import (
    SfmEncoder,
    create_sfm_extractor,
    sfm_min_num_samples,
    sfm_num_frames,
)
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
    tokenizer_problems,
)
from speechmapper_plugin.speech_llm.pipeline_result import PipelineResult
from speechmapper_plugin.speech_llm.task_prompts import TaskPrompts

Instructions = str | Sequence[str]
"""One instruction for every input, or one per input."""

BatchInput = list[AudioInput] | tuple[AudioInput, ...]


class SpeechMapperPipeline:
    """Speech in, text out: transcription, translation, spoken QA or any instruction.

    ``audio`` is a path, the bytes of an encoded file, or a 1-D float waveform
    (numpy array or tensor, in [-1, 1]) at 16 kHz (``sample_rate=`` for other
    rates; it is resampled). A list or tuple of those is a batch: the methods
    then return a list, in input order. Generation is greedy unless
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
    :param sfm_layer: 1-based encoder layer; default: the encoder config's
        ``output_layer`` (24 for SeamlessM4T-v2 large, SpeechMapper's).
    :param sfm_layer_norm: Apply the encoder's final LayerNorm; default: the
        config's ``output_layer_norm`` (``True``).
    :param sfm_dtype: The speech encoder's compute dtype (fp32 reproduces the
        reference implementation; see :class:`SpeechFeatureExtractor`).
    :param prompts: The instruction templates of :meth:`transcribe`,
        :meth:`translate` and :meth:`answer`.
    :param batch_size: Inputs per forward pass (inputs are grouped by length).
    :raises IncompatibleComponentsError: if the projector was trained for
        another LLM, or widths, chat template or vocabulary do not match.
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
        sfm_dtype: torch.dtype = torch.float32,
        device: Device | str | None = None,
        generation: GenerationConfig | None = None,
        system_prompt: str | None = None,
        prompts: TaskPrompts | None = None,
        batch_size: int = 8,
    ) -> None:
        self.generation = generation or GenerationConfig()
        self.generation.check()

        self.prompts = prompts or TaskPrompts()
        self.prompts.check()

        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive, but is {batch_size}.")

        if system_prompt is not None:
            problem = no_placeholder_problem(system_prompt, "The system prompt")
            if problem is not None:
                raise ValueError(problem)

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
        self._prompts: dict[str, SpeechPrompt] = {}

    @classmethod
    def from_cards(
        cls,
        sfm: str,
        projector: str,
        llm: str,
        *,
        device: Device | str | None = None,
        dtype: torch.dtype = torch.float32,
        sfm_dtype: torch.dtype = torch.float32,
        sfm_layer: int | None = None,
        sfm_layer_norm: bool | None = None,
        generation: GenerationConfig | None = None,
        system_prompt: str | None = None,
        prompts: TaskPrompts | None = None,
        batch_size: int = 8,
    ) -> SpeechMapperPipeline:
        """Load the three components from their asset cards.

        The cards' configurations, the chat template and the tokenizer are
        checked against each other before any model weights are loaded.

        :param dtype: The dtype of the projector and the LLM (e.g.
            ``torch.bfloat16`` on GPUs).
        :param device: Default: fairseq2's current device (CUDA if available).
        """
        from speechmapper_plugin.speech_llm.pipeline_cards import load_components

        parts = load_components(
            sfm, projector, llm, device=device, dtype=dtype, sfm_dtype=sfm_dtype
        )

        return cls(
            parts.sfm,
            parts.projector,
            parts.llm,
            parts.tokenizer,
            llm_name=parts.llm_name,
            template=parts.template,
            sfm_layer=sfm_layer,
            sfm_layer_norm=sfm_layer_norm,
            sfm_dtype=sfm_dtype,
            device=device,
            generation=generation,
            system_prompt=system_prompt,
            prompts=prompts,
            batch_size=batch_size,
        )

    # -- task methods --------------------------------------------------------

    @overload
    def transcribe(
        self,
        audio: AudioInput,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> str: ...

    @overload
    def transcribe(
        self,
        audio: BatchInput,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> list[str]: ...

    def transcribe(
        self,
        audio: AudioInput | BatchInput,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> str | list[str]:
        """What is said, with :attr:`prompts.asr` as the instruction."""
        return self._texts(audio, self.prompts.transcription(), sample_rate, batch_size)

    @overload
    def translate(
        self,
        audio: AudioInput,
        target_lang: str,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> str: ...

    @overload
    def translate(
        self,
        audio: BatchInput,
        target_lang: str,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> list[str]: ...

    def translate(
        self,
        audio: AudioInput | BatchInput,
        target_lang: str,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> str | list[str]:
        """A translation into ``target_lang`` (a code such as ``"de"`` or a name)."""
        instruction = self.prompts.translation(target_lang)

        return self._texts(audio, instruction, sample_rate, batch_size)

    @overload
    def answer(
        self,
        audio: AudioInput,
        question: str,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> str: ...

    @overload
    def answer(
        self,
        audio: BatchInput,
        question: Instructions,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> list[str]: ...

    def answer(
        self,
        audio: AudioInput | BatchInput,
        question: Instructions,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> str | list[str]:
        """The answer to a text ``question`` about the audio (one question for
        all inputs, or one per input)."""
        if isinstance(question, str):
            instructions: Instructions = self.prompts.question(question)
        else:
            instructions = [self.prompts.question(q) for q in question]

        return self._texts(audio, instructions, sample_rate, batch_size)

    @overload
    def generate(
        self,
        audio: AudioInput,
        instruction: str,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> str: ...

    @overload
    def generate(
        self,
        audio: BatchInput,
        instruction: Instructions,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> list[str]: ...

    def generate(
        self,
        audio: AudioInput | BatchInput,
        instruction: Instructions,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> str | list[str]:
        """The answer to any instruction; it must contain ``<speech>`` exactly
        once, where the speech goes (e.g. ``"Summarise this talk.\\n<speech>"``)."""
        return self._texts(audio, instruction, sample_rate, batch_size)

    def _texts(
        self,
        audio: AudioInput | BatchInput,
        instructions: Instructions,
        sample_rate: int | None,
        batch_size: int | None,
    ) -> str | list[str]:
        results = self.run(
            audio, instructions, sample_rate=sample_rate, batch_size=batch_size
        )

        texts = [r.text for r in results]

        return texts if is_batch(audio) else texts[0]

    # -- lower-level API -----------------------------------------------------

    def run(
        self,
        audio: AudioInput | BatchInput,
        instructions: Instructions,
        *,
        sample_rate: int | None = None,
        batch_size: int | None = None,
    ) -> list[PipelineResult]:
        """Full results (text, token ids, stop reason, prompt, number of speech
        positions) for one input or a batch; always a list, in input order.

        Instructions are checked, then every input is loaded and checked, and
        only then do the models run.
        """
        items: list[AudioInput]
        if isinstance(audio, (list, tuple)):
            items, single = list(audio), False
        else:
            items, single = [audio], True
        if not items:
            raise ValueError("The batch of audio inputs is empty.")

        batch_size = self.batch_size if batch_size is None else batch_size
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be positive, but is {batch_size}.")

        per_item = self._per_item(instructions, len(items))

        for i, instruction in enumerate(per_item):
            where = (
                "The instruction"
                if isinstance(instructions, str)
                else f"Instruction {i}"
            )
            self.encode_prompt(instruction, where=where)

        waveforms = [
            load_input(a, sample_rate=sample_rate, index=None if single else i)
            for i, a in enumerate(items)
        ]
        prompts = [
            self._checked_waveform(
                waveform,
                instruction,
                where=describe_input(items[i], None if single else i),
            )
            for i, (waveform, instruction) in enumerate(
                zip(waveforms, per_item, strict=True)
            )
        ]

        # Longest first: little padding per batch; results go back in input order.
        order = sorted(range(len(items)), key=lambda i: -waveforms[i].numel())

        results: dict[int, PipelineResult] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            outputs = self._generate_waveforms(
                [waveforms[i] for i in chunk],
                [prompts[i] for i in chunk],
                [per_item[i] for i in chunk],
            )
            results.update(zip(chunk, outputs, strict=True))

        return [results[i] for i in range(len(items))]

    def run_waveforms(
        self,
        waveforms: Sequence[Tensor],
        instructions: Sequence[str],
        *,
        names: Sequence[str] | None = None,
    ) -> list[PipelineResult]:
        """One forward batch of mono 16 kHz float waveforms (``[samples]`` each).

        :param names: How errors refer to the inputs (default: their positions).
        :raises AudioInputError: if an input is unusable (checked before the
            models run).
        """
        names = _names(names, len(waveforms), "waveform")
        _check_count(len(waveforms), len(instructions), "waveforms")

        prompts = [
            self._checked_waveform(waveform, instruction, where=name)
            for waveform, instruction, name in zip(
                waveforms, instructions, names, strict=True
            )
        ]

        return self._generate_waveforms(waveforms, prompts, instructions)

    def run_waveforms_or_skip(
        self,
        waveforms: Sequence[Tensor],
        instructions: Sequence[str],
        *,
        names: Sequence[str] | None = None,
    ) -> list[PipelineResult | Unusable]:
        """:meth:`run_waveforms`, but an input too short or too long gives an
        :class:`Unusable` (with its reason code) in its place instead of an
        error; the usable ones are generated in one batch. For recipes that
        count and skip (``recipes.generate``); each input is checked once.
        """
        names = _names(names, len(waveforms), "waveform")
        _check_count(len(waveforms), len(instructions), "waveforms")

        outcomes: list[SpeechPrompt | Unusable] = []
        for waveform, instruction, name in zip(
            waveforms, instructions, names, strict=True
        ):
            _check_waveform(waveform, name)
            positions = self.usable_audio(waveform.numel(), instruction, where=name)
            outcomes.append(
                positions
                if isinstance(positions, Unusable)
                else self.encode_prompt(instruction, where=name)
            )

        return _fill(
            outcomes,
            lambda usable, prompts: self._generate_waveforms(
                [waveforms[i] for i in usable],
                prompts,
                [instructions[i] for i in usable],
            ),
        )

    def run_features(
        self,
        features: Sequence[Tensor],
        instructions: Sequence[str],
        *,
        pre_averaged: bool = True,
        names: Sequence[str] | None = None,
    ) -> list[PipelineResult]:
        """One forward batch of speech-encoder features (``[frames, dim]`` each),
        e.g. from a :class:`FeatureStore`.

        :param pre_averaged: The frames were already averaged
            ``projector.config.frame_averaging``:1 (feature stores are).
        :raises AudioInputError: if an input is unusable (checked before the
            models run).
        """
        names = _names(names, len(features), "features")
        _check_count(len(features), len(instructions), "feature sequences")

        prompts = []
        for seq, instruction, name in zip(features, instructions, names, strict=True):
            outcome = self._usable_feature_seq(
                seq, instruction, pre_averaged=pre_averaged, where=name
            )
            if isinstance(outcome, Unusable):
                raise _error(name, outcome)
            prompts.append(outcome)

        return self._generate_features(features, prompts, instructions, pre_averaged)

    def run_features_or_skip(
        self,
        features: Sequence[Tensor],
        instructions: Sequence[str],
        *,
        pre_averaged: bool = True,
        names: Sequence[str] | None = None,
    ) -> list[PipelineResult | Unusable]:
        """:meth:`run_features`, but an unusable input (too short, too long,
        non-finite features) gives an :class:`Unusable` in its place; see
        :meth:`run_waveforms_or_skip`."""
        names = _names(names, len(features), "features")
        _check_count(len(features), len(instructions), "feature sequences")

        outcomes = [
            self._usable_feature_seq(
                seq, instruction, pre_averaged=pre_averaged, where=name
            )
            for seq, instruction, name in zip(
                features, instructions, names, strict=True
            )
        ]

        return _fill(
            outcomes,
            lambda usable, prompts: self._generate_features(
                [features[i] for i in usable],
                prompts,
                [instructions[i] for i in usable],
                pre_averaged,
            ),
        )

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
            self._prompts[instruction] = prompt

        return prompt

    @property
    def min_num_samples(self) -> int:
        """The shortest 16 kHz audio that yields one speech embedding
        (10480 samples, 0.655 s, for the paper's projector)."""
        frames = min_input_frames(self.projector.config)

        return sfm_min_num_samples(self.extractor, frames)

    def usable_audio(
        self, num_samples: int, instruction: str, *, where: str = "The instruction"
    ) -> int | Unusable:
        """The number of speech embeddings for ``num_samples`` of 16 kHz audio
        (for ``cif`` and ``ctc_compression`` adapters the most they can emit:
        their real number depends on what is said), or why there is none or
        the LLM cannot take them (see :mod:`speechmapper_plugin.data.usability`).

        :param where: Names the instruction if it lacks its placeholder.
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
            return too_short

        return self.usable_features(
            sfm_num_frames(self.extractor, num_samples),
            instruction,
            pre_averaged=False,
            where=where,
        )

    def usable_features(
        self,
        num_frames: int,
        instruction: str,
        *,
        pre_averaged: bool,
        where: str = "The instruction",
    ) -> int | Unusable:
        """:meth:`usable_audio` for ``num_frames`` speech-encoder frames: exact
        for fixed-rate projectors, an upper bound for variable-length adapters
        (so the context check never lets through what cannot fit)."""
        config = self.projector.config

        positions = speech_positions(config, num_frames, pre_averaged=pre_averaged)
        if isinstance(positions, Unusable):
            return positions

        prompt = self.encode_prompt(instruction, where=where)
        too_long = prompt_problem(
            config,
            len(prompt.prefix_ids),
            positions,
            len(prompt.suffix_ids),
            self.llm.max_seq_len,
        )

        return positions if too_long is None else too_long

    def check_audio(
        self, num_samples: int, instruction: str, *, where: str = "audio"
    ) -> int:
        """:meth:`usable_audio`, raising for unusable audio.

        :raises SpeechTooShortError: if it gives no speech embedding.
        :raises SpeechTooLongError: if the projector or the LLM cannot take it.
        """
        return _raise_if_unusable(
            self.usable_audio(num_samples, instruction, where=where), where
        )

    def check_features(
        self,
        num_frames: int,
        instruction: str,
        *,
        pre_averaged: bool,
        where: str = "features",
    ) -> int:
        """:meth:`usable_features`, raising as :meth:`check_audio` does."""
        return _raise_if_unusable(
            self.usable_features(
                num_frames, instruction, pre_averaged=pre_averaged, where=where
            ),
            where,
        )

    # -- internals -----------------------------------------------------------

    def _per_item(self, instructions: Instructions, count: int) -> list[str]:
        if isinstance(instructions, str):
            return [instructions] * count

        per_item = list(instructions)
        if len(per_item) != count:
            raise ValueError(
                f"Got {count} audio inputs, but {len(per_item)} instructions; give one instruction for all or one per input."
            )

        return per_item

    def _checked_waveform(
        self, waveform: Tensor, instruction: str, *, where: str
    ) -> SpeechPrompt:
        _check_waveform(waveform, where)
        self.check_audio(waveform.numel(), instruction, where=where)

        return self.encode_prompt(instruction, where=where)

    def _usable_feature_seq(
        self, seq: Tensor, instruction: str, *, pre_averaged: bool, where: str
    ) -> SpeechPrompt | Unusable:
        input_dim = self.projector.config.input_dim
        if seq.dim() != 2 or seq.size(-1) != input_dim:
            raise AudioInputError(
                where,
                f"expected features of shape [frames, {input_dim}], got {tuple(seq.shape)}.",
            )

        if not is_finite(seq):
            return Unusable(
                NON_FINITE_FEATURES, "the features hold NaN or infinite values"
            )

        positions = self.usable_features(
            seq.size(0), instruction, pre_averaged=pre_averaged, where=where
        )
        if isinstance(positions, Unusable):
            return positions

        return self.encode_prompt(instruction, where=where)

    def _generate_waveforms(
        self,
        waveforms: Sequence[Tensor],
        prompts: Sequence[SpeechPrompt],
        instructions: Sequence[str],
    ) -> list[PipelineResult]:
        with torch.inference_mode():
            features, lens = self.extractor(waveforms)

            return self._project_and_generate(
                features, lens, prompts, instructions, pre_averaged=False
            )

    def _generate_features(
        self,
        features: Sequence[Tensor],
        prompts: Sequence[SpeechPrompt],
        instructions: Sequence[str],
        pre_averaged: bool,
    ) -> list[PipelineResult]:
        with torch.inference_mode():
            lens = torch.tensor([seq.size(0) for seq in features], device=self.device)
            batch = pad_sequence(
                [seq.to(self.device) for seq in features], batch_first=True
            )

            return self._project_and_generate(
                batch, lens, prompts, instructions, pre_averaged=pre_averaged
            )

    def _project_and_generate(
        self,
        features: Tensor,
        lens: Tensor,
        prompts: Sequence[SpeechPrompt],
        instructions: Sequence[str],
        *,
        pre_averaged: bool,
    ) -> list[PipelineResult]:
        features = features.to(self.device, self._projector_dtype)
        layout = BatchLayout.of(features, [int(n) for n in lens.tolist()])

        speech, speech_layout = self.projector(
            features, layout, pre_averaged=pre_averaged
        )
        # The lengths the projector reports: for variable-length adapters the
        # number of outputs it emitted, which only the forward pass knows.
        speech_lens = list(speech_layout.seq_lens)

        inputs = assemble_inputs(
            partial(embed_token_ids, self.llm),
            [p.prefix_ids for p in prompts],
            speech,
            speech_lens,
            [p.suffix_ids for p in prompts],
        )

        generations = generate_from_embeddings(
            self.llm,
            inputs.embeds,
            inputs.layout,
            stop_token_ids=self._stop_ids,
            config=self.generation,
            num_speech_positions=speech_lens,
        )

        return [
            self._result(generation, prompt, instruction, positions)
            for generation, prompt, instruction, positions in zip(
                generations, prompts, instructions, speech_lens, strict=True
            )
        ]

    def _result(
        self,
        generation: GenerationResult,
        prompt: SpeechPrompt,
        instruction: str,
        num_speech_positions: int,
    ) -> PipelineResult:
        tokens = torch.tensor(generation.tokens, dtype=torch.int64)

        text = self._decoder(tokens).strip() if tokens.numel() else ""

        return PipelineResult(
            text=text,
            instruction=instruction,
            prompt=prompt,
            num_speech_positions=num_speech_positions,
            generation=generation,
        )


def _names(names: Sequence[str] | None, count: int, what: str) -> list[str]:
    if names is None:
        return [f"{what} {i}" for i in range(count)]

    if len(names) != count:
        raise ValueError(f"Got {count} inputs, but {len(names)} names.")

    return list(names)


def _check_count(num_inputs: int, num_instructions: int, what: str) -> None:
    if num_instructions != num_inputs:
        raise ValueError(
            f"Got {num_inputs} {what}, but {num_instructions} instructions."
        )


def _check_waveform(waveform: Tensor, where: str) -> None:
    if waveform.dim() != 1 or not waveform.is_floating_point():
        raise AudioInputError(
            where,
            f"expected a 1-D float waveform at 16 kHz, got shape {tuple(waveform.shape)} and dtype {waveform.dtype}.",
        )


def _error(where: str, problem: Unusable) -> AudioInputError:
    if problem.reason == NON_FINITE_FEATURES:
        return AudioInputError(where, f"{problem.detail}.")

    return unusable_speech_error(where, problem)


def _raise_if_unusable(outcome: int | Unusable, where: str) -> int:
    if isinstance(outcome, Unusable):
        raise _error(where, outcome)

    return outcome


def _fill(
    outcomes: Sequence[SpeechPrompt | Unusable],
    generate: Callable[[list[int], list[SpeechPrompt]], list[PipelineResult]],
) -> list[PipelineResult | Unusable]:
    """The results of the usable inputs (generated together from their
    positions and prompts) and the :class:`Unusable` of the others, in input
    order."""
    usable = [i for i, o in enumerate(outcomes) if not isinstance(o, Unusable)]
    prompts = [o for o in outcomes if not isinstance(o, Unusable)]
    results = dict(
        zip(usable, generate(usable, prompts) if usable else [], strict=True)
    )

    return [
        o if isinstance(o, Unusable) else results[i] for i, o in enumerate(outcomes)
    ]
