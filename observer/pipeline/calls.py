"""Which call each client of a batch belongs to (spec/observer.md §4).

The room -> callId mapping lives in the replicated rooms storage, whose writes are ordered by the
Raft log: ``insert_all`` is insert-if-absent cluster-wide and ``set_all`` returns the values it
replaced, in commit order. The daemon whose write won is the only one that creates the call and
emits CALL_STARTED, so a call starts exactly once however many daemons see its clients.

MASTER: the observer gives every room a fresh callId (clients' own callIds are ignored). A room
whose call has ended is released by the expirer (it deletes the room with the call), after which
the next sample starts a new call (BUG 1 fixed: the reference never released rooms).

SLAVE: clients bring the callId. A new callId in a room replaces the room's call, and the replaced
call is ended right away (CALL_ENDED; its clients, PCs and tracks are cleaned up by the expirer).
The room remembers the calls it replaced recently: clients still reporting one of those are
*stale* (their reports keep their own callId, no entities are tracked, the room does not switch
back). A client reporting a call that exists but is not the room's current one (a concurrent
switch) is a *remedy* client and is tracked under its own call, as in the reference.

A call missing from the calls storage whose entry is in the lifecycle journal lost its daemon
(without backups): it is re-created from the journal with the same callId and no CALL_STARTED, so
the room keeps its call. Clients whose room names a call that does not exist otherwise (yet: another
daemon won the room and is creating it; or anymore: it ended and the expirer has not released the
room yet) are *deferred*: the pipeline retries their samples with a later batch.
"""

from __future__ import annotations

import uuid

import attrs

from observer.pipeline.batch import ObservedClient, ObservedRoom
from observer.pipeline.bulk import get_all
from observer.pipeline.lifecycle import call_started
from observer.pipeline.lifecycle_journal import lookup
from observer.pipeline.settings import MASTER
from observer.reports.model import Report
from observer.repositories import Call, JournalKey, Repositories, Room, call_key, replace


@attrs.define(eq=False)
class CallAssignment:
    calls: dict[str, Call] = attrs.Factory(dict)  # callId -> call, for every tracked client's call
    tracked: list[tuple[ObservedClient, str]] = attrs.Factory(list)  # entity tracking under callId
    untracked: list[tuple[ObservedClient, str]] = attrs.Factory(list)  # stale: reports only
    deferred: list[ObservedClient] = attrs.Factory(list)
    no_call_id: list[ObservedClient] = attrs.Factory(list)  # slave mode, the client sent no callId
    events: list[Report] = attrs.Factory(list)
    created: list[Call] = attrs.Factory(list)  # calls this batch started (for the lifecycle journal)
    restored: dict[JournalKey, Call] = attrs.Factory(dict)  # calls re-created from the journal
    # slave mode: calls this daemon replaced, ended with the batch's other endings (None: value unknown)
    retired: dict[str, Call | None] = attrs.Factory(dict)

    def call_of(self) -> dict[tuple[str, str], str]:
        """(room key, clientId) -> the callId its reports carry."""
        out = {(c.room_key, c.client_id): call_id for c, call_id in self.tracked}
        out.update({(c.room_key, c.client_id): call_id for c, call_id in self.untracked})
        return out


async def assign_calls(repos: Repositories, rooms: dict[str, ObservedRoom], *, mode: str, now: int,
                       ended_memory: int = 8) -> CallAssignment:
    if mode == MASTER:
        return await _assign_master(repos, rooms, now)
    return await _assign_slave(repos, rooms, now, ended_memory)


async def _assign_master(repos: Repositories, rooms: dict[str, ObservedRoom], now: int) -> CallAssignment:
    out = CallAssignment()
    existing = await repos.rooms.get_all(rooms)
    proposals = {key: Room(room.service_id, room.room_id, str(uuid.uuid4()))
                 for key, room in rooms.items() if key not in existing}
    new_calls: dict[str, Call] = {}
    if proposals:
        lost = await repos.rooms.insert_all(proposals)
        for key, proposal in proposals.items():
            if key in lost:
                existing[key] = lost[key]
                continue
            existing[key] = proposal
            observed = rooms[key]
            new_calls[proposal.call_id] = Call(observed.service_id, observed.room_id, proposal.call_id,
                                               started=now, marker=observed.marker,
                                               sample_touched=observed.max_ts, server_touched=now)
    wanted = {room.call_id for room in existing.values()} - new_calls.keys()
    out.calls.update(await get_all(repos.calls, wanted))
    restored = await _from_journal(repos, wanted - out.calls.keys(), now)
    await _create_calls(repos, new_calls, restored, out)
    for key, observed in rooms.items():
        call_id = existing[key].call_id
        if call_id in out.calls:
            out.tracked.extend((client, call_id) for client in observed.clients.values())
        else:
            out.deferred.extend(observed.clients.values())
    return out


async def _from_journal(repos: Repositories, missing: set[str], now: int) -> dict[str, Call]:
    """The missing calls the lifecycle journal knows (their daemon was lost), touched now."""
    if not missing:
        return {}
    found = await lookup(repos, [call_key(call_id) for call_id in missing])
    return {call.call_id: replace(call, server_touched=now) for call in found.values() if isinstance(call, Call)}


async def _create_calls(repos: Repositories, new_calls: dict[str, Call], restored: dict[str, Call],
                        out: CallAssignment) -> None:
    """Insert the new calls (CALL_STARTED for the ones this insert created) and the calls re-created
    from the journal (no event), in one request."""
    if not new_calls and not restored:
        return
    already = await repos.calls.insert_all({**restored, **new_calls})
    for call_id, call in new_calls.items():
        if call_id in already:
            out.calls[call_id] = already[call_id]
        else:
            out.calls[call_id] = call
            out.events.append(call_started(call))
            out.created.append(call)
    for call_id, call in restored.items():
        if call_id in already:
            out.calls[call_id] = already[call_id]
        else:
            out.calls[call_id] = call
            out.restored[call_key(call_id)] = call


@attrs.define(eq=False)
class _RoomPlan:
    observed: ObservedRoom
    by_call: dict[str, list[ObservedClient]]
    room: Room | None
    target: str | None = None
    ended: frozenset[str] = frozenset()
    retry: bool = False  # lost the race to create the room
    retired: set[str] = attrs.Factory(set)  # calls this daemon replaced in the room


async def _assign_slave(repos: Repositories, rooms: dict[str, ObservedRoom], now: int,
                        ended_memory: int) -> CallAssignment:
    out = CallAssignment()
    plans: dict[str, _RoomPlan] = {}
    for key, observed in rooms.items():
        by_call: dict[str, list[ObservedClient]] = {}
        for client in observed.clients.values():
            if client.call_id is None:
                out.no_call_id.append(client)
            else:
                by_call.setdefault(client.call_id, []).append(client)
        if by_call:
            plans[key] = _RoomPlan(observed, by_call, None)
    if not plans:
        return out
    existing_rooms = await repos.rooms.get_all(plans)
    candidates = {call_id for plan in plans.values() for call_id in plan.by_call}
    candidates.update(room.call_id for room in existing_rooms.values())
    existing_calls = await repos.calls.get_all(candidates)
    replaced_before = {c for room in existing_rooms.values() for c in room.ended_call_ids}
    restored = await _from_journal(repos, candidates - existing_calls.keys() - replaced_before, now)
    existing_calls.update(restored)

    to_create: dict[str, Room] = {}
    to_alter: dict[str, Room] = {}
    for key, plan in plans.items():
        room = plan.room = existing_rooms.get(key)
        current = room.call_id if room is not None else None
        ended = set(room.ended_call_ids) if room is not None else set()
        new_ids = [c for c in plan.by_call if c != current and c not in ended and c not in existing_calls]
        if not new_ids:
            if room is None:
                # the room was released while its call lives on (a race with the expirer):
                # point it at that call again, so the room does not start another one
                plan.target = _latest(plan, list(plan.by_call))
                to_create[key] = Room(plan.observed.service_id, plan.observed.room_id, plan.target)
            else:
                plan.target, plan.ended = current, frozenset(ended)
            continue
        # one switch per room and batch: the call reported most recently wins, the other new ones
        # are remembered as ended so they do not switch the room back and forth later
        target = _latest(plan, new_ids)
        others = [c for c in new_ids if c != target]
        if room is None:
            to_create[key] = Room(plan.observed.service_id, plan.observed.room_id, target,
                                  others[-ended_memory:])
        else:
            history = [*room.ended_call_ids, room.call_id, *others]
            to_alter[key] = Room(room.service_id, room.room_id, target, history[-ended_memory:])
        plan.target = target

    new_calls: dict[str, Call] = {}
    if to_create:
        lost = await repos.rooms.insert_all(to_create)
        for key, proposal in to_create.items():
            plan = plans[key]
            if key in lost:  # another daemon created the room first: decide again with the next batch
                plan.retry = True
                continue
            plan.ended = frozenset(proposal.ended_call_ids)
            if proposal.call_id in existing_calls:
                continue
            observed = plan.observed
            started = min(client.min_ts for client in plan.by_call[proposal.call_id])
            new_calls[proposal.call_id] = Call(observed.service_id, observed.room_id, proposal.call_id,
                                               started=started, marker=observed.marker,
                                               sample_touched=observed.max_ts, server_touched=now)
    if to_alter:
        replaced = await repos.rooms.set_all(to_alter)
        repairs: dict[str, Room] = {}
        for key, written in to_alter.items():
            plan = plans[key]
            before = replaced.get(key)
            expected = plan.room.call_id if plan.room is not None else None
            plan.ended = frozenset(written.ended_call_ids)
            if before is not None and before.call_id == written.call_id:
                continue  # another daemon made the same switch first; it creates the call
            if expected is not None:
                plan.retired.add(expected)
            if before is not None and before.call_id != expected:
                # a concurrent switch to yet another call landed in between: it is replaced too
                plan.retired.add(before.call_id)
                history = [*written.ended_call_ids, before.call_id]
                repairs[key] = attrs.evolve(written, ended_call_ids=history[-ended_memory:])
                plan.ended = frozenset(repairs[key].ended_call_ids)
            observed = plan.observed
            new_calls[written.call_id] = Call(observed.service_id, observed.room_id, written.call_id,
                                              started=now, marker=observed.marker,
                                              sample_touched=observed.max_ts, server_touched=now)
        if repairs:
            await repos.rooms.set_all(repairs)
    retired = {c for plan in plans.values() for c in plan.retired}
    await _retire_replaced_calls(repos, retired, existing_calls, out)
    await _create_calls(repos, new_calls, {c: call for c, call in restored.items() if c not in retired}, out)

    for plan in plans.values():
        for call_id, clients in plan.by_call.items():
            call = out.calls.get(call_id) or existing_calls.get(call_id)
            if plan.retry:
                out.deferred.extend(clients)
            elif call_id == plan.target:
                if call is None:
                    out.deferred.extend(clients)
                else:
                    out.calls[call_id] = call
                    out.tracked.extend((client, call_id) for client in clients)
            elif call_id in plan.ended or call_id in retired or call is None:
                out.untracked.extend((client, call_id) for client in clients)
            else:  # remedy: the call exists, the room has moved on without ending it
                out.calls[call_id] = call
                out.tracked.extend((client, call_id) for client in clients)
    return out


def _latest(plan: _RoomPlan, call_ids: list[str]) -> str:
    """The callId reported most recently."""
    return max(call_ids, key=lambda c: max(client.max_ts for client in plan.by_call[c]))


async def _retire_replaced_calls(repos: Repositories, retired: set[str], known: dict[str, Call],
                                 out: CallAssignment) -> None:
    """The calls this daemon replaced are ended with the batch's other endings (BUG fixed: slave
    mode let them idle out). Their clients become orphans, which the expirer removes with
    CLIENT_LEFT and the rest of the cascade."""
    if not retired:
        return
    values: dict[str, Call | None] = {c: known[c] for c in retired if c in known}
    missing = retired - values.keys()
    if missing:
        values.update(await repos.calls.get_all(missing))
    out.retired = {c: values.get(c) for c in retired}
