"""How the pipeline keeps the lifecycle journal (``observer.repositories.journal``).

* **record**: the calls, clients, PCs and client tracks a batch created go into the journal in one
  replicated ``set_all`` at the end of the batch (creation is rare next to samples; a batch that
  only touches known entities writes nothing).
* **restore**: an entity missing from its storage (its daemon died without backups), or there as
  another incarnation, whose incarnation is in the journal is re-created from it with the same ids
  and no opening event (the callers look the keys up with ``lookup``, one local read).
* **confirm**: after a read barrier the re-created entities are checked against the journal again;
  one whose entry is gone was ended by the leader meanwhile (its closing event is out), so it is
  deleted again and its next samples start a new incarnation.
* **end**: entities the pipeline ends itself (slave mode: the replaced call; entities moved to
  another call) leave the journal first, then their storages. The closing event is emitted when the
  journal delete removed the entry: the leader's expirer ends journal entries with the same
  replicated delete, so whoever removes the entry emits the event, once. Entities without a journal
  entry (their batch's journal write failed) fall back to their own storage's delete.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from observer.pipeline.bulk import delete_all, get_all
from observer.pipeline.lifecycle import closing_event
from observer.reports.model import Report
from observer.repositories import JournalEntity, JournalEntry, JournalKey, Repositories, grid_key, journal_key
from observer.repositories.journal import STORAGE_OF

log = logging.getLogger(__name__)

# children before parents, as the expirer deletes
_END_ORDER = ("inbound_tracks", "outbound_tracks", "peer_connections", "clients", "calls")


@attrs.frozen
class Ending:
    """An entity the pipeline ends: its storage (repositories attribute), key there, journal key and
    value (None when unknown: it ends without an event)."""

    storage: str
    key: str
    journal_key: JournalKey
    entity: JournalEntity | None


def ending_of(entity: JournalEntity) -> Ending:
    jkey = journal_key(entity)
    return Ending(STORAGE_OF[jkey[0]], grid_key(entity), jkey, entity)


async def lookup(repos: Repositories, keys: Iterable[JournalKey]) -> dict[JournalKey, JournalEntity]:
    """The journal's entities of these incarnations (a local read of the replicated storage)."""
    found: dict[JournalKey, JournalEntry] = await get_all(repos.journal, keys)
    return {key: entry.entity for key, entry in found.items()}


async def end_entities(repos: Repositories, endings: Sequence[Ending], journaled: Mapping[JournalKey, Any],
                       now: int) -> list[Report]:
    """Delete the entities (journal first, one replicated delete) and return the closing events of
    the ones this call ended. ``journaled``: the journal entries read for this batch."""
    if not endings:
        return []
    ended_entries = await delete_all(repos.journal, {e.journal_key for e in endings if e.journal_key in journaled})
    deleted: dict[str, set[str]] = {}
    for storage in _END_ORDER:
        keys = {e.key for e in endings if e.storage == storage}
        if keys:
            deleted[storage] = await delete_all(getattr(repos, storage), keys)
    events: list[Report] = []
    for ending in sorted(endings, key=lambda e: _END_ORDER.index(e.storage)):
        if ending.journal_key in journaled:
            ended = ending.journal_key in ended_entries
        else:
            ended = ending.key in deleted[ending.storage]
        if not ended:
            continue
        if ending.entity is None:
            log.warning("ended %s %s without knowing its fields: no closing event", ending.storage, ending.key)
            continue
        events.append(closing_event(ending.entity, now))
    return events


async def record(repos: Repositories, created: Iterable[JournalEntity]) -> None:
    entries = {journal_key(entity): JournalEntry(entity) for entity in created}
    if entries:
        await repos.journal.set_all(entries)


async def confirm_restored(repos: Repositories, restored: Mapping[JournalKey, JournalEntity]) -> set[JournalKey]:
    """Delete again the re-created entities whose journal entry the leader removed meanwhile;
    returns their journal keys."""
    if not restored:
        return set()
    sync = getattr(repos.journal, "sync", None)
    if sync is not None:
        await sync()  # every journal delete committed before now is applied here
    present = await get_all(repos.journal, restored)
    gone = [key for key in restored if key not in present]
    if not gone:
        return set()
    log.info("%d entities re-created from the lifecycle journal were ended meanwhile: removed again", len(gone))
    for storage in _END_ORDER:
        keys = {grid_key(restored[key]) for key in gone if STORAGE_OF[key[0]] == storage}
        if keys:
            await delete_all(getattr(repos, storage), keys)
    return set(gone)
