"""OpenAI's error shape: ``{"error": {"message", "type", "param", "code"}}``.

Every refusal of the server is an :class:`ApiError`, so a client (the
``openai`` package raises ``BadRequestError``, ``AuthenticationError``,
``NotFoundError`` by status) sees what OpenAI's own API would send, and a bad
request never reaches the model worker.
"""

from __future__ import annotations

from typing import Any, Final

INVALID_REQUEST: Final = "invalid_request_error"
AUTHENTICATION: Final = "authentication_error"
NOT_FOUND: Final = "not_found_error"
SERVER_ERROR: Final = "server_error"


class ApiError(Exception):
    """A request the server refuses, with its HTTP status and OpenAI fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(
    message: str, type: str, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """The JSON body OpenAI's API answers an error with."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(
    message: str, *, param: str | None = None, code: str | None = None
) -> ApiError:
    """400: malformed or unusable input (OpenAI's ``invalid_request_error``)."""
    return ApiError(400, message, param=param, code=code)
