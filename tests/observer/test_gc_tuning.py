"""The daemon's garbage-collector settings (observer.gc_tuning), checked in a child process so this
test process keeps CPython's defaults."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from observer.gc_tuning import OLDER_THRESHOLD, YOUNG_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]


def test_tuning_freezes_startup_objects_and_raises_the_thresholds() -> None:
    code = ("import gc; before = gc.get_threshold(); from observer.gc_tuning import tune_gc_for_throughput; "
            "tune_gc_for_throughput(); print(before, gc.get_threshold(), gc.get_freeze_count() > 1000)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True).stdout.strip()
    assert out == f"(700, 10, 10) ({YOUNG_THRESHOLD}, {OLDER_THRESHOLD}, {OLDER_THRESHOLD}) True"
