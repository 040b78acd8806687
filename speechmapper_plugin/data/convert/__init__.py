"""Converters from test sets' published on-disk layouts to our manifests and
instruction files (``python -m speechmapper_plugin.data.convert CORPUS ...``).

Nothing is downloaded: each converter reads a local copy laid out as its
distribution ships it (each module's docstring cites the layout) and refuses,
with a message saying what to do, input it cannot use as a whole.
"""

from __future__ import annotations

from speechmapper_plugin.data.convert.covost2 import convert_covost2 as convert_covost2
from speechmapper_plugin.data.convert.europarl_st import (
    convert_europarl_st as convert_europarl_st,
)
from speechmapper_plugin.data.convert.fleurs import convert_fleurs as convert_fleurs
from speechmapper_plugin.data.convert.librispeech import (
    convert_librispeech as convert_librispeech,
)
from speechmapper_plugin.data.convert.librisqa import (
    convert_librisqa as convert_librisqa,
)
from speechmapper_plugin.data.convert.librisqa import split_options as split_options
from speechmapper_plugin.data.convert.report import ConvertError as ConvertError
from speechmapper_plugin.data.convert.spoken_squad import (
    convert_spoken_squad as convert_spoken_squad,
)
