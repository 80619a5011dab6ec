"""A 3-process hamok grid on loopback, using nothing but hamok.

    python examples/hamok_counter.py            # starts 3 processes and waits for them

Each process listens on its own port, finds the others through StaticDiscovery, and joins one
cluster. Every process inserts 100 keys into a replicated storage ("counts") and puts one
entry into a separated storage ("owned"); each then prints what it sees: 300 replicated
entries, and the other processes' separated entries read across the grid.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

BASE_PORT = int(os.environ.get("HAMOK_EXAMPLE_BASE_PORT", "5700"))
NODES = 3


async def node(index: int) -> None:
    from hamok import GridConfig, StaticDiscovery, StorageGrid, WebsocketEndpoint

    name = f"node{index}"
    endpoint = WebsocketEndpoint(name, "127.0.0.1", BASE_PORT + index, secret="example-shared-secret")
    grid = StorageGrid(endpoint, GridConfig(local_id=name))
    counts = grid.replicated_storage("counts")
    owned = grid.separated_storage("owned")
    await grid.start()
    peers = {f"node{i}": ("127.0.0.1", BASE_PORT + i) for i in range(NODES) if i != index}
    discovery = StaticDiscovery(peers)
    await discovery.start(endpoint)
    while len(grid.members) < NODES or grid.joining:       # wait for one cluster of three
        await asyncio.sleep(0.1)
    await counts.insert_all({f"{name}-{i}": i for i in range(100)})
    await owned.set(name, f"owned by {name}")
    await asyncio.sleep(1.0)
    await counts.sync()
    others = await owned.get_all([f"node{i}" for i in range(NODES)])
    print(f"{name}: leader={grid.leader_id} replicated={await counts.size()} separated={sorted(others)}",
          flush=True)
    await asyncio.sleep(1.0)
    await discovery.stop()
    await grid.close()


def main() -> None:
    if len(sys.argv) > 1:
        asyncio.run(node(int(sys.argv[1])))
        return
    procs = [subprocess.Popen([sys.executable, __file__, str(i)]) for i in range(NODES)]
    sys.exit(max(p.wait() for p in procs))


if __name__ == "__main__":
    main()
