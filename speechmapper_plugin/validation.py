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
