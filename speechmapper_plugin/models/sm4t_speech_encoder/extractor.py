"""Batch feature extraction: waveforms of any lengths -> padded layer-L (or
length-adaptor) features.

This is the entry point later stages use (feature caching, inference): it
computes the fbank per utterance (so padding never leaks into the per-utterance
standardisation), pads, runs the encoder once for the batch, optionally
averages frames 2:1 as SpeechMapper does, and zeroes the padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final, final

import torch
from fairseq2.nn import BatchLayout
from fairseq2.nn.utils.padding import pad_seqs
from torch import Tensor
from typing_extensions import Unpack, override

from speechmapper_plugin.audio import (
    SAMPLE_RATE,
    AudioTooShortError,
    FbankExtractor,
    min_num_samples,
    num_encoder_frames,
)
from speechmapper_plugin.models.frames import (
    conv_stack_min_input_length,
    conv_stack_output_length,
)
from speechmapper_plugin.models.sm4t_speech_encoder.config import (
    SM4T_SPEECH_ENCODER_FAMILY,
)
from speechmapper_plugin.models.sm4t_speech_encoder.model import SM4TSpeechEncoder
from speechmapper_plugin.models.speech_encoder import (
    ExtractorOptions,
    SpeechEncoderFeatureExtractor,
)

FBANK_FRAMES_PER_SECOND: Final = 100
"""SeamlessM4T's fbank hop is 10 ms."""


@final
class SpeechFeatureExtractor(SpeechEncoderFeatureExtractor[SM4TSpeechEncoder]):
    """Extracts the hidden states of one SeamlessM4T-v2 encoder layer (or, for
    a model with ``length_adaptor``, the adaptor's output) for a batch of
    waveforms (see :class:`SpeechEncoderFeatureExtractor` for the options). ``layer_norm`` defaults to the model config's (``True``: Hugging
    Face ``hidden_states[24]``); bf16 drifts by about 3% relative (measured on
    random weights).
    """

    family: ClassVar[str] = SM4T_SPEECH_ENCODER_FAMILY

    def __init__(
        self, model: SM4TSpeechEncoder, **options: Unpack[ExtractorOptions]
    ) -> None:
        super().__init__(model, **options)

        self._fbank = FbankExtractor(
            fbank_stride=model.config.fbank_stride,
            num_mel_bins=model.config.num_fbank_channels,
        )

    @property
    @override
    def frame_rate(self) -> float:
        """50 Hz, 6.25 Hz after the length adaptor (before frame averaging)."""
        config = self.model.config

        stride = config.fbank_stride * self.frame_averaging
        for _, conv_stride, _ in config.adaptor_convs():
            stride *= conv_stride

        return FBANK_FRAMES_PER_SECOND / stride

    @override
    def num_frames(self, num_samples: int) -> int:
        """``n // 8 + 1`` after the length adaptor for ``n`` 50 Hz frames."""
        config = self.model.config

        return conv_stack_output_length(
            num_encoder_frames(num_samples, config.fbank_stride),
            config.adaptor_convs(),
        )

    @override
    def min_num_samples_for_frames(self, num_frames: int) -> int:
        """560 samples for one frame at stride 2, with or without the adaptor
        (it pads, so one 50 Hz frame gives one output frame)."""
        config = self.model.config

        # `num_frames` outputs of the stack are one output of the stack
        # followed by a `num_frames`-wide window.
        encoder_frames = conv_stack_min_input_length(
            [*config.adaptor_convs(), (num_frames, 1, 0)]
        )

        return min_num_samples(config.fbank_stride * encoder_frames)

    def fbanks(self, waveforms: Sequence[Tensor]) -> tuple[Tensor, BatchLayout]:
        """The padded, standardised fbank batch of mono 16 kHz waveforms."""
        if not waveforms:
            raise ValueError("`waveforms` must not be empty.")

        for waveform in waveforms:
            if waveform.dim() == 1 and waveform.numel() < self.min_num_samples:
                raise AudioTooShortError(
                    waveform.numel(), self.min_num_samples, SAMPLE_RATE
                )

        return pad_seqs([self._fbank(w) for w in waveforms])

    @override
    def encode(self, waveforms: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        fbanks, layout = self.fbanks(waveforms)

        fbanks = fbanks.to(device=self.device, dtype=self.dtype)

        seqs, seqs_layout = self.model(
            fbanks, layout, layer=self.layer, layer_norm=self.layer_norm
        )

        return seqs, torch.tensor(seqs_layout.seq_lens, device=self.device)
