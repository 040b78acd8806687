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

from collections.abc import Sequence
from functools import partial
from typing import overload

import torch
from fairseq2.data.tokenizers import Tokenizer
from fairseq2.device import Device
from fairseq2.models.transformer_lm import TransformerLM
from fairseq2.nn import BatchLayout
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from speechmapper_plugin.audio import SAMPLE_RATE
from speechmapper_plugin.data.instructions import check_placeholder
from speechmapper_plugin.generation import (
    GenerationConfig,
    GenerationResult,
    embed_token_ids,
    generate_from_embeddings,
)
from speechmapper_plugin.generation.inputs import model_dtype_and_device
from speechmapper_plugin.llm import (
    SPEECH_PLACEHOLDER,
    ChatTemplate,
    SpeechPrompt,
    chat_template_for_card,
    encode_speech_prompt,
    stop_token_ids,
)
from speechmapper_plugin.llm.tokens import create_text_decoder
from speechmapper_plugin.models.adapters import (
    AnyProjector,
    is_variable_length,
    max_output_length,
    min_input_frames,
)
from speechmapper_plugin.models.sfm import (
    SfmEncoder,
    create_sfm_extractor,
    sfm_min_num_samples,
    sfm_num_frames,
)
from speechmapper_plugin.speech_llm.assemble import assemble_inputs
from speechmapper_plugin.speech_llm.audio_inputs import (
    AudioInput,
    AudioInputError,
    SpeechTooLongError,
    SpeechTooShortError,
    describe_input,
    is_batch,
    load_input,
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

        if system_prompt is not None and SPEECH_PLACEHOLDER in system_prompt:
            raise ValueError(
                f"The system prompt must not contain the speech placeholder {SPEECH_PLACEHOLDER}: {system_prompt!r}."
            )

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
        for i, (waveform, instruction) in enumerate(
            zip(waveforms, per_item, strict=True)
        ):
            self.check_audio(
                waveform.numel(),
                instruction,
                where=describe_input(items[i], None if single else i),
            )

        # Longest first: little padding per batch; results go back in input order.
        order = sorted(range(len(items)), key=lambda i: -waveforms[i].numel())

        results: dict[int, PipelineResult] = {}
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            outputs = self.run_waveforms(
                [waveforms[i] for i in chunk], [per_item[i] for i in chunk]
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
        """
        names = _names(names, len(waveforms), "waveform")
        if len(instructions) != len(waveforms):
            raise ValueError(
                f"Got {len(waveforms)} waveforms, but {len(instructions)} instructions."
            )

        prompts = []
        for waveform, instruction, name in zip(
            waveforms, instructions, names, strict=True
        ):
            if waveform.dim() != 1 or not waveform.is_floating_point():
                raise AudioInputError(
                    name,
                    f"expected a 1-D float waveform at 16 kHz, got shape {tuple(waveform.shape)} and dtype {waveform.dtype}.",
                )
            self.check_audio(waveform.numel(), instruction, where=name)
            prompts.append(self.encode_prompt(instruction, where=name))

        with torch.inference_mode():
            features, lens = self.extractor(waveforms)

            return self._project_and_generate(
                features, lens, prompts, instructions, pre_averaged=False
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
        """
        names = _names(names, len(features), "features")
        if len(instructions) != len(features):
            raise ValueError(
                f"Got {len(features)} feature sequences, but {len(instructions)} instructions."
            )

        input_dim = self.projector.config.input_dim

        prompts = []
        for seq, instruction, name in zip(features, instructions, names, strict=True):
            if seq.dim() != 2 or seq.size(-1) != input_dim:
                raise AudioInputError(
                    name,
                    f"expected features of shape [frames, {input_dim}], got {tuple(seq.shape)}.",
                )
            if not bool(torch.isfinite(seq).all()):
                raise AudioInputError(name, "the features hold NaN or infinite values.")
            self.check_features(
                seq.size(0), instruction, pre_averaged=pre_averaged, where=name
            )
            prompts.append(self.encode_prompt(instruction, where=name))

        with torch.inference_mode():
            lens = torch.tensor([seq.size(0) for seq in features], device=self.device)
            batch = pad_sequence(
                [seq.to(self.device) for seq in features], batch_first=True
            )

            return self._project_and_generate(
                batch, lens, prompts, instructions, pre_averaged=pre_averaged
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

    def check_audio(
        self, num_samples: int, instruction: str, *, where: str = "audio"
    ) -> int:
        """The number of speech embeddings for ``num_samples`` of 16 kHz audio
        (for ``cif`` and ``ctc_compression`` adapters the most they can emit:
        their real number depends on what is said).

        :raises SpeechTooShortError: if it gives no speech embedding.
        :raises SpeechTooLongError: if the projector or the LLM cannot take it.
        """
        if num_samples < self.min_num_samples:
            raise SpeechTooShortError(
                where,
                f"{num_samples / SAMPLE_RATE:.3f} s of audio gives no speech frames for the LLM: the speech encoder and the projector need at least {self.min_num_samples / SAMPLE_RATE:.3f} s ({self.min_num_samples} samples at 16 kHz).",
            )

        return self.check_features(
            sfm_num_frames(self.extractor, num_samples),
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
        """The number of speech embeddings for ``num_frames`` encoder frames:
        exact for fixed-rate projectors, an upper bound for variable-length
        adapters (so the context check never lets through what cannot fit)."""
        config = self.projector.config

        positions = max_output_length(config, num_frames, pre_averaged=pre_averaged)
        if positions < 1:
            shortest = min_input_frames(config, pre_averaged=pre_averaged)
            raise SpeechTooShortError(
                where,
                f"{num_frames} speech-encoder frames give no speech frames for the LLM: the projector needs at least {shortest}.",
            )

        encoder_frames = (
            num_frames * config.frame_averaging if pre_averaged else num_frames
        )
        if encoder_frames > config.max_input_frames:
            raise SpeechTooLongError(
                where,
                f"{encoder_frames} speech-encoder frames ({encoder_frames / 50:.0f} s at 50 Hz) exceed the projector's `max_input_frames` ({config.max_input_frames}); split the audio.",
            )

        prompt = self.encode_prompt(instruction, where=where)
        prompt_len = len(prompt.prefix_ids) + positions + len(prompt.suffix_ids)
        if prompt_len >= self.llm.max_seq_len:
            speech = (
                f"up to {positions} speech embeddings"
                if is_variable_length(config)
                else f"{positions} speech embeddings"
            )
            raise SpeechTooLongError(
                where,
                f"the prompt would take {prompt_len} positions ({speech}), leaving no room to generate within the LLM's {self.llm.max_seq_len}; split the audio.",
            )

        return positions

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
