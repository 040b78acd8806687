"""Language codes: one spelling (ISO 639-1 where there is one) for comparisons;
the table and the rule live with the language names, in
:mod:`speechmapper_plugin.data.instructions.prompts`."""

from __future__ import annotations

from speechmapper_plugin.data.instructions.prompts import (
    language_code as language_code,
)
