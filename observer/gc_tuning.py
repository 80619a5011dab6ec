"""Garbage-collector settings for the daemon process (not applied when ``ObserverApp`` is embedded).

Every client sample makes a few hundred container objects (decoded stats lists, report payloads,
``Report`` objects) that live for one batch. With CPython's default thresholds (700, 10, 10) that
means a young collection every few samples and frequent older-generation passes over every entity,
payload and queued frame alive: about a third of the daemon's CPU under load
(``scripts/bench_observer.py``). Nearly all of that garbage is freed by reference counting, so the
collector is run less often; reference cycles are still collected, later.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000
OLDER_THRESHOLD = 50


def tune_gc_for_throughput() -> None:
    """Move what startup built (modules, schemas, generated builders) out of the collector's reach and
    raise the collection thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
