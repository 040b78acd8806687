"""Metrics: embedding-space signals for stage 1 and text metrics."""

from __future__ import annotations

from speechmapper_plugin.metrics.embedding_space import drop_pad_ids as drop_pad_ids
from speechmapper_plugin.metrics.embedding_space import (
    nearest_token_ids as nearest_token_ids,
)
from speechmapper_plugin.metrics.embedding_space import (
    row_norm_ratio as row_norm_ratio,
)
from speechmapper_plugin.metrics.embedding_space import (
    word_position_cosine as word_position_cosine,
)
from speechmapper_plugin.metrics.wer import normalize_text as normalize_text
from speechmapper_plugin.metrics.wer import word_errors as word_errors
