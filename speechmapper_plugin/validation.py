"""Config checks shared by the model, dataset, recipe and quickstart configs.

Every ``validate()`` reports errors as one line naming the field, so a user can
fix the YAML or command line without reading a traceback.
"""

from __future__ import annotations

from collections.abc import Iterable

from fairseq2.utils.validation import ValidationResult


def check_positive_fields(
    result: ValidationResult,
    config: object,
    names: Iterable[str],
    *,
    section: str = "",
) -> None:
    """Adds an error to ``result`` for each field of ``config`` in ``names``
    that is below 1; ``section`` prefixes the field in the message (e.g.
    ``"dataset."``)."""
    for name in names:
        value = getattr(config, name)
        if value < 1:
            result.add_error(f"`{section}{name}` must be positive, but is {value}.")


def check_non_negative_fields(
    result: ValidationResult,
    config: object,
    names: Iterable[str],
    *,
    section: str = "",
) -> None:
    """Like :func:`check_positive_fields`, for fields where 0 is allowed
    (layer counts that may be 0, loss weights)."""
    for name in names:
        value = getattr(config, name)
        if value < 0:
            result.add_error(f"`{section}{name}` must be non-negative, but is {value}.")


def check_divisible(
    result: ValidationResult, config: object, name: str, divisor_name: str
) -> None:
    """Adds an error to ``result`` if field ``name`` of ``config`` is not a
    multiple of field ``divisor_name`` (e.g. a model width and its attention
    heads); a divisor below 1 is left to :func:`check_positive_fields`."""
    value, divisor = getattr(config, name), getattr(config, divisor_name)
    if divisor >= 1 and value % divisor != 0:
        result.add_error(
            f"`{name}` ({value}) must be divisible by `{divisor_name}` ({divisor})."
        )
