"""Tiny assets, built offline: real checkpoints, tokenizers, cards and speech.

Everything here is written in the formats of the real releases (Hugging Face
safetensors directories, ``tokenizer.json``, fairseq2 asset cards, 16 kHz WAV
with a manifest), only tiny and randomly initialised, so that the quickstart
and the tests run the plugin's real code paths without downloading anything.
"""

from __future__ import annotations

from speechmapper_plugin.tiny_assets.cards import write_card_file as write_card_file
from speechmapper_plugin.tiny_assets.llama import TINY_LLAMA_DIMS as TINY_LLAMA_DIMS
from speechmapper_plugin.tiny_assets.llama import TinyLlamaDims as TinyLlamaDims
from speechmapper_plugin.tiny_assets.llama import build_hf_llama as build_hf_llama
from speechmapper_plugin.tiny_assets.llama import embedding_rows as embedding_rows
from speechmapper_plugin.tiny_assets.llama import (
    fairseq2_llama_config as fairseq2_llama_config,
)
from speechmapper_plugin.tiny_assets.llama3_llm import (
    LLAMA3_ROPE_THETA as LLAMA3_ROPE_THETA,
)
from speechmapper_plugin.tiny_assets.llama3_llm import (
    write_tiny_llama3 as write_tiny_llama3,
)
from speechmapper_plugin.tiny_assets.llama3_tokenizer import (
    LLAMA3_SPECIAL_TOKENS as LLAMA3_SPECIAL_TOKENS,
)
from speechmapper_plugin.tiny_assets.llama3_tokenizer import (
    build_llama3_tokenizer as build_llama3_tokenizer,
)
from speechmapper_plugin.tiny_assets.sentences import (
    INSTRUCTION_SENTENCES as INSTRUCTION_SENTENCES,
)
from speechmapper_plugin.tiny_assets.sentences import (
    templated_sentences as templated_sentences,
)
from speechmapper_plugin.tiny_assets.sentences import (
    training_sentences as training_sentences,
)
from speechmapper_plugin.tiny_assets.sm4t import SM4T_TINY_DIMS as SM4T_TINY_DIMS
from speechmapper_plugin.tiny_assets.sm4t import write_tiny_sm4t as write_tiny_sm4t
from speechmapper_plugin.tiny_assets.speech import (
    SpeechSynthesisError as SpeechSynthesisError,
)
from speechmapper_plugin.tiny_assets.speech import (
    has_speech_synthesis as has_speech_synthesis,
)
from speechmapper_plugin.tiny_assets.speech import (
    synthesize_corpus as synthesize_corpus,
)
from speechmapper_plugin.tiny_assets.speech import (
    synthesize_speech as synthesize_speech,
)
from speechmapper_plugin.tiny_assets.tokenizer_files import (
    hf_tokenizer_size as hf_tokenizer_size,
)
