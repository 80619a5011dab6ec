"""Where the project's shared data lives: ``../shared`` beside the checkout (as in CI),
or OBSERVER_SHARED_DIR. The fixtures are required: a missing directory is an error, not a skip."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OBSERVER_SHARED_DIR", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
MANIFEST = FIXTURES / "manifest.json"

if not MANIFEST.is_file():
    raise RuntimeError(f"shared fixtures not found at {FIXTURES} (set OBSERVER_SHARED_DIR)")
