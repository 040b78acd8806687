"""``speechmapper serve``: an OpenAI-compatible speech API (FastAPI) around
:class:`~speechmapper_plugin.speech_llm.SpeechMapperPipeline`.

:class:`SpeechEngine` holds the model and batches requests (no HTTP in it, so
other front ends, e.g. Ray Serve, can wrap it); :func:`create_app` is the
HTTP API.
"""

from __future__ import annotations

from speechmapper_plugin.serving.app import create_app as create_app
from speechmapper_plugin.serving.audio import AudioLimits as AudioLimits
from speechmapper_plugin.serving.engine import RequestFuture as RequestFuture
from speechmapper_plugin.serving.engine import Sampling as Sampling
from speechmapper_plugin.serving.engine import SpeechEngine as SpeechEngine
from speechmapper_plugin.serving.engine import SpeechRequest as SpeechRequest
from speechmapper_plugin.serving.errors import ApiError as ApiError
