"""Thousands of entries through tiny message limits (reference SeparatedStorageChunkingTest and
SeparatedStorageStressTest): nothing lost, nothing duplicated, nothing hangs."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from hamok.transport.memory import Faults

from .test_separated_harness import Cluster, eventually

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("max_keys", [1, 10])
async def test_bulk_operations_across_three_nodes_with_small_messages(max_keys: int) -> None:
    count = 1500 if max_keys == 1 else 3000
    async with Cluster(3, backups=True, config={"max_message_keys": max_keys}) as cluster:
        a, b, c = cluster.stores
        await a.set_all({f"a{i}": i for i in range(count)})
        await b.set_all({f"b{i}": {"n": i, "tags": ["x"] * 3} for i in range(count)})
        wanted = [f"a{i}" for i in range(count)] + [f"b{i}" for i in range(count)]
        found = await c.get_all(wanted)
        assert len(found) == 2 * count
        assert found["a7"] == 7 and found[f"b{count - 1}"] == {"n": count - 1, "tags": ["x"] * 3}
        assert await c.size() == 2 * count
        assert len(await c.keys()) == 2 * count
        assert len([kv async for kv in c.items(batch_size=700)]) == 2 * count
        # updates go to the owners, new keys stay with the caller
        old = await c.set_all({**{f"a{i}": -i for i in range(0, count, 3)}, "c-new": 1})
        assert len(old) == len(range(0, count, 3)) and c.local_keys() == {"c-new"}
        assert (await b.get_all(["a3"]))["a3"] == -3
        existing = await c.insert_all({f"b{i}": None for i in range(count)})
        assert len(existing) == count
        # backups keep up with the small messages too
        await eventually(lambda: cluster.nodes[0].backups.stats().saved_entries == count,  # type: ignore[union-attr]
                         within=10, what="a's entries mirrored")
        deleted = await c.delete_all(wanted)
        assert len(deleted) == 2 * count
        assert await a.size() == 1


async def test_stress_random_operations_keep_every_key_consistent() -> None:
    """Clients hammer random nodes for ~2 s over a jittery, reordering network. Each client
    owns a key range (one writer per key, the storage's assumption) and checks every answer
    against its own model."""
    faults = Faults(delay=0.0005, jitter=0.002, reorder=0.1, reorder_delay=0.003)
    async with Cluster(3, seed=7, faults=faults, backups=True, config={"max_message_keys": 50}) as cluster:
        stores = cluster.stores
        errors: list[str] = []
        ops = 0

        async def client(cid: int) -> None:
            nonlocal ops
            rng = random.Random(cid)
            model: dict[str, int] = {}
            keys = [f"c{cid}-{i}" for i in range(60)]
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                store = rng.choice(stores)
                batch = rng.sample(keys, rng.randint(1, 20))
                op = rng.random()
                got: Any
                expect: Any
                if op < 0.35:
                    entries = {k: rng.randint(0, 10_000) for k in batch}
                    old = await store.set_all(entries)
                    expect = {k: model[k] for k in batch if k in model}
                    model.update(entries)
                    got = old
                elif op < 0.5:
                    entries = {k: rng.randint(0, 10_000) for k in batch}
                    got = await store.insert_all(entries)
                    expect = {k: model[k] for k in batch if k in model}
                    model.update({k: v for k, v in entries.items() if k not in expect})
                elif op < 0.7:
                    got = await store.delete_all(batch)
                    expect = {k for k in batch if k in model}
                    for k in batch:
                        model.pop(k, None)
                else:
                    got = await store.get_all(batch)
                    expect = {k: model[k] for k in batch if k in model}
                if got != expect:
                    errors.append(f"client {cid}: {op:.2f} on {store.grid.local_id}: {got!r} != {expect!r}")
                ops += 1
            final = await stores[0].get_all(keys)
            if final != model:
                errors.append(f"client {cid}: final state differs")

        await asyncio.gather(*(client(i) for i in range(8)))
        assert not errors, errors[:5]
        assert ops > 200
        owners = [k for store in stores for k in store.local_keys()]
        assert len(owners) == len(set(owners)), "a key ended up on two nodes"
        await cluster.flush_backups()
        await eventually(lambda: all(n.backups.stats().saved_entries == n.store.local_size()  # type: ignore[union-attr]
                                     for n in cluster.nodes), within=5, what="mirrors settled")
