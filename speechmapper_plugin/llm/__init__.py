"""The target-LLM side: archs, cards, embedding-only loading, chat templates,
and the assembly of speech and token embeddings into its input."""

from __future__ import annotations

from speechmapper_plugin.llm.archs import EUROLLM_9B_ARCH as EUROLLM_9B_ARCH
from speechmapper_plugin.llm.assemble import assemble_inputs as assemble_inputs
from speechmapper_plugin.llm.cards import TargetLLMCardError as TargetLLMCardError
from speechmapper_plugin.llm.cards import read_llm_embed_dim as read_llm_embed_dim
from speechmapper_plugin.llm.cards import (
    read_llm_max_seq_len as read_llm_max_seq_len,
)
from speechmapper_plugin.llm.cards import read_pad_token as read_pad_token
from speechmapper_plugin.llm.cards import retrieve_llm_card as retrieve_llm_card
from speechmapper_plugin.llm.chat_template import CHAT_TEMPLATES as CHAT_TEMPLATES
from speechmapper_plugin.llm.chat_template import CHATML_TEMPLATE as CHATML_TEMPLATE
from speechmapper_plugin.llm.chat_template import LLAMA3_1_TEMPLATE as LLAMA3_1_TEMPLATE
from speechmapper_plugin.llm.chat_template import LLAMA3_TEMPLATE as LLAMA3_TEMPLATE
from speechmapper_plugin.llm.chat_template import (
    MISTRAL_TEMPLATE as MISTRAL_TEMPLATE,
)
from speechmapper_plugin.llm.chat_template import (
    QWEN_CHATML_TEMPLATE as QWEN_CHATML_TEMPLATE,
)
from speechmapper_plugin.llm.chat_template import (
    SPEECH_PLACEHOLDER as SPEECH_PLACEHOLDER,
)
from speechmapper_plugin.llm.chat_template import ChatTemplate as ChatTemplate
from speechmapper_plugin.llm.chat_template import (
    chat_template_for_card as chat_template_for_card,
)
from speechmapper_plugin.llm.chat_template import get_chat_template as get_chat_template
from speechmapper_plugin.llm.embeddings import embed_token_ids as embed_token_ids
from speechmapper_plugin.llm.speech_prompt import SpeechPrompt as SpeechPrompt
from speechmapper_plugin.llm.speech_prompt import encode_response as encode_response
from speechmapper_plugin.llm.speech_prompt import (
    encode_speech_prompt as encode_speech_prompt,
)
from speechmapper_plugin.llm.speech_prompt import (
    encode_text_prompt as encode_text_prompt,
)
from speechmapper_plugin.llm.speech_prompt import stop_token_ids as stop_token_ids
from speechmapper_plugin.llm.target_embeddings import (
    PAD_NORM_WARN_RATIO as PAD_NORM_WARN_RATIO,
)
from speechmapper_plugin.llm.target_embeddings import (
    TargetLLMEmbeddings as TargetLLMEmbeddings,
)
from speechmapper_plugin.llm.target_embeddings import TargetTokens as TargetTokens
from speechmapper_plugin.llm.target_embeddings import (
    load_target_llm_embeddings as load_target_llm_embeddings,
)
from speechmapper_plugin.llm.target_embeddings import (
    report_pad_row as report_pad_row,
)
from speechmapper_plugin.llm.target_embeddings import (
    resolve_target_tokens as resolve_target_tokens,
)
from speechmapper_plugin.llm.token_embeddings import (
    TokenEmbeddingLoadError as TokenEmbeddingLoadError,
)
from speechmapper_plugin.llm.token_embeddings import (
    load_token_embeddings as load_token_embeddings,
)
from speechmapper_plugin.llm.token_embeddings import (
    locate_token_embeddings as locate_token_embeddings,
)
from speechmapper_plugin.llm.tokens import UnknownTokenError as UnknownTokenError
from speechmapper_plugin.llm.tokens import max_token_id as max_token_id
from speechmapper_plugin.llm.tokens import token_to_id as token_to_id
from speechmapper_plugin.llm.transcripts import (
    TRANSCRIPT_NORMALIZATIONS as TRANSCRIPT_NORMALIZATIONS,
)
from speechmapper_plugin.llm.transcripts import (
    TranscriptNormalization as TranscriptNormalization,
)
from speechmapper_plugin.llm.transcripts import (
    normalize_transcript as normalize_transcript,
)
