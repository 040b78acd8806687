"""Audio input for the speech encoder: decoding, downmixing, resampling, fbank."""

from __future__ import annotations

from speechmapper_plugin.audio.channels import to_mono as to_mono
from speechmapper_plugin.audio.decode import AudioSource as AudioSource
from speechmapper_plugin.audio.decode import DecodedAudio as DecodedAudio
from speechmapper_plugin.audio.decode import decode_audio as decode_audio
from speechmapper_plugin.audio.decode import load_audio as load_audio
from speechmapper_plugin.audio.errors import AudioDecodeError as AudioDecodeError
from speechmapper_plugin.audio.errors import AudioError as AudioError
from speechmapper_plugin.audio.errors import AudioTooShortError as AudioTooShortError
from speechmapper_plugin.audio.errors import (
    InvalidWaveformError as InvalidWaveformError,
)
from speechmapper_plugin.audio.errors import check_mono_float as check_mono_float
from speechmapper_plugin.audio.fbank import SAMPLE_RATE as SAMPLE_RATE
from speechmapper_plugin.audio.fbank import FbankExtractor as FbankExtractor
from speechmapper_plugin.audio.fbank import min_num_samples as min_num_samples
from speechmapper_plugin.audio.fbank import num_encoder_frames as num_encoder_frames
from speechmapper_plugin.audio.fbank import num_fbank_frames as num_fbank_frames
from speechmapper_plugin.audio.fbank import standardize_fbank as standardize_fbank
from speechmapper_plugin.audio.resample import resample as resample
