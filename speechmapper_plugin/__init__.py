"""SpeechMapper as a fairseq2 plugin.

Importing the package is cheap; fairseq2 calls :func:`setup_fairseq2_extension`
through the ``fairseq2.extension`` entry point when the runtime starts.
"""

from __future__ import annotations

from speechmapper_plugin.extension import (
    setup_fairseq2_extension as setup_fairseq2_extension,
)

__version__ = "0.1.0"

__all__ = ["setup_fairseq2_extension", "__version__"]
