"""``python -m speechmapper_plugin.quickstart [OUT_DIR] [--small]``"""

from __future__ import annotations

import sys

from speechmapper_plugin.quickstart.run import main

sys.exit(main())
