"""The JSON bodies of ``/v1/chat/completions`` (OpenAI's names) and how a
conversation becomes the pipeline's one speech instruction.

The pipeline renders one user turn holding the speech (with an optional
system prompt); a conversation it cannot express (assistant turns, several
user turns, no audio or several audios) is refused with a 400 that says so.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from speechmapper_plugin.llm import SPEECH_PLACEHOLDER
from speechmapper_plugin.serving.errors import ApiError, bad_request


class InputAudio(BaseModel):
    data: str
    """The encoded file, base64."""

    format: str
    """``wav``, ``mp3`` or ``flac``."""


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class AudioPart(BaseModel):
    type: Literal["input_audio"]
    input_audio: InputAudio


ContentPart = Annotated[TextPart | AudioPart, Field(discriminator="type")]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; fields this server has no use for
    (``user``, ``metadata``, ...) are ignored, as a drop-in server must."""

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[Message] = Field(min_length=1)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None


def parse_chat_request(body: Any) -> ChatRequest:
    """:raises ApiError: 400 naming the first field that is wrong."""
    try:
        request = ChatRequest.model_validate(body)
    except ValidationError as ex:
        raise validation_error(ex) from None
    if request.n not in (None, 1):
        raise bad_request(
            f"`n` must be 1 (one answer per request), but is {request.n}.", param="n"
        )
    return request


def validation_error(error: ValidationError) -> ApiError:
    """The first problem pydantic found, as OpenAI names it (``messages.0.role``)."""
    first = error.errors()[0]
    param = ".".join(str(part) for part in first["loc"]) or None
    return bad_request(f"`{param}`: {first['msg']}.", param=param)


def speech_turn(request: ChatRequest) -> tuple[str | None, str, AudioPart, int]:
    """The system prompt, the instruction (``<speech>`` where the audio part
    was, text parts joined by newlines), the audio part and its message index.

    :raises ApiError: 400 for a conversation the pipeline cannot express.
    """
    system: list[str] = []
    user: list[tuple[int, Message]] = []
    for i, message in enumerate(request.messages):
        if message.role in ("system", "developer"):
            if not isinstance(message.content, str):
                raise bad_request(
                    f"`messages.{i}.content`: a {message.role} message must be text.",
                    param=f"messages.{i}.content",
                )
            system.append(message.content)
        elif message.role == "user":
            user.append((i, message))
        else:
            raise _one_turn(f"`messages.{i}` is a {message.role} turn")

    if len(user) != 1:
        raise _one_turn(f"the conversation has {len(user)} user turns")

    index, message = user[0]
    parts = message.content
    if isinstance(parts, str) or parts is None:
        raise bad_request(
            f"`messages.{index}.content` holds no audio: give it as a list of parts with one `input_audio` part (base64 wav, mp3 or flac) beside the text.",
            param=f"messages.{index}.content",
            code="missing_audio",
        )

    audio = [p for p in parts if isinstance(p, AudioPart)]
    if len(audio) != 1:
        raise bad_request(
            f"`messages.{index}.content` has {len(audio)} `input_audio` parts; this model takes exactly one audio per request.",
            param=f"messages.{index}.content",
            code="missing_audio" if not audio else "too_many_audio_parts",
        )

    pieces = [
        SPEECH_PLACEHOLDER if isinstance(p, AudioPart) else p.text.strip()
        for p in parts
    ]
    instruction = "\n".join(piece for piece in pieces if piece)
    return ("\n".join(system) if system else None), instruction, audio[0], index


def _one_turn(what: str) -> ApiError:
    return bad_request(
        f"This model answers one user turn (its speech and text, with an optional system message): {what}. Send the question about the audio as one user message.",
        param="messages",
        code="unsupported_conversation",
    )
