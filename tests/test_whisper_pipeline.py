"""The pipeline with a Whisper encoder: audio in (windows padded and chunked),
same answer as from the Whisper features a store holds."""

from __future__ import annotations

import pytest
import torch
from fairseq2.data.tokenizers import load_tokenizer
from fairseq2.models import load_model
from fairseq2.models.transformer_lm import TransformerLM

from speechmapper_plugin.generation import GenerationConfig
from speechmapper_plugin.models.speechmapper import SpeechMapperProjector
from speechmapper_plugin.models.whisper_encoder import (
    WhisperEncoder,
    WhisperSpeechFeatureExtractor,
)
from speechmapper_plugin.speech_llm import SpeechMapperPipeline
from tests.support.audio import tone

INSTRUCTION = "Transcribe the audio.\n<speech>"


def test_whisper_audio_and_stored_features_give_the_same_answer() -> None:
    cpu = torch.device("cpu")
    sfm = load_model("test_whisper_hf", device=cpu)
    projector = load_model("test_projector_llama", device=cpu)
    llm = load_model("test_llama", device=cpu)
    assert isinstance(sfm, WhisperEncoder)
    assert isinstance(projector, SpeechMapperProjector)
    assert isinstance(llm, TransformerLM)

    pipeline = SpeechMapperPipeline(
        sfm,
        projector,
        llm,
        load_tokenizer("test_llama"),
        llm_name="test_llama",
        device=cpu,
        generation=GenerationConfig(max_new_tokens=6),
    )

    # 2.5 s: three 1-second windows of the tiny Whisper, the last one padded.
    waveforms = [
        torch.from_numpy(tone(seconds, freq=freq, seed=i)).float()
        for i, (seconds, freq) in enumerate([(2.5, 200.0), (1.3, 260.0)])
    ]

    store_extractor = WhisperSpeechFeatureExtractor(
        sfm, frame_averaging=projector.config.frame_averaging
    )
    features, lens = store_extractor(waveforms)
    stored = [features[i, : lens[i]].to(torch.float16) for i in range(2)]
    assert lens.tolist() == [62, 32]  # (50 + 50 + 25) // 2, (50 + 15) // 2

    from_features = pipeline.run(stored, INSTRUCTION, features=True)
    from_audio = pipeline.run(waveforms, INSTRUCTION)

    for waveform, actual, expected in zip(
        waveforms, from_features, from_audio, strict=True
    ):
        assert actual.num_speech_positions == expected.num_speech_positions
        assert actual.token_ids == expected.token_ids
        assert expected.num_speech_positions == pipeline.check_audio(
            waveform.numel(), INSTRUCTION
        )


def test_from_cards_takes_a_whisper_card_and_refuses_a_non_sfm() -> None:
    pipeline = SpeechMapperPipeline.from_cards(
        "test_whisper_hf",
        "test_projector_llama",
        "test_llama",
        device="cpu",
        generation=GenerationConfig(max_new_tokens=4),
    )
    assert isinstance(pipeline.extractor, WhisperSpeechFeatureExtractor)
    waveform = torch.from_numpy(tone(1.5, freq=220.0, seed=5)).float()
    (result,) = pipeline.run(waveform, INSTRUCTION)
    assert result.num_speech_positions == pipeline.check_audio(
        waveform.numel(), INSTRUCTION
    )

    with pytest.raises(ValueError, match="'test_llama' is not a speech-encoder card"):
        SpeechMapperPipeline.from_cards(
            "test_llama", "test_projector_llama", "test_llama", device="cpu"
        )
