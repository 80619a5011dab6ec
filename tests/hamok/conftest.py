from __future__ import annotations

import logging

logging.getLogger("pysyncobj").setLevel(logging.ERROR)
