"""Microbenchmark of the observer's per-sample hot path outside the pipeline: frame decoding
(orjson + normalization) and report building, on the recorded JSON fixture frames.

Prints microseconds per sample for each step, all frames and steady-state frames separately (the
3rd and later frame of each client connection: no meta data, what a monitor sends for the rest of a
call), and the resulting decode+reports samples/s on one core. Inbound tracks get a remote match,
as in a call where every publisher is known.

    python scripts/bench_reports.py [--seconds 0.5] [--compare REF [--rounds 3]]

``--compare REF`` also measures the observer package of git revision REF (extracted with
``git archive`` into a temporary directory); both trees run in subprocesses, alternately, and the
best value of each row is printed side by side.

Recorded on the development machine (2 vCPU VM, CPython 3.11.7 without PGO), ``--compare 8fedec4
--rounds 4``: 8fedec4 is the tree before the hot-path work (payloads built as one dict display of
every field, slow-path coercion of ints in double fields and fractional ints, frozen Reports, the
general normalization walk for every sample); microseconds per client sample:

    step                          all frames (27 reports)     steady state (13 reports)
    decode (orjson.loads ~37/25)    51.9 -> 46.2                 37.0 -> 32.6
    build_client_reports           126.4 -> 84.7                 87.1 -> 54.4
    decode + reports               179.1 -> 130.9 (7,600/s)     124.1 -> 87.3 (11,450/s)
    build_sfu_reports (34 reports) 174.7 -> 111.6
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("OBSERVER_SHARED_DIR", ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"
STEADY_FROM = 2  # orderInConnection of the first frame without meta data


def _time_per_call(fn: Callable[[], Any], seconds: float, repeats: int = 15) -> float:
    """Best-of-``repeats`` mean seconds per call of ``fn``."""
    n = 1
    while True:  # calibrate: enough calls for about seconds / repeats per round
        start = time.perf_counter()
        for _ in range(n):
            fn()
        took = time.perf_counter() - start
        if took >= seconds / repeats / 4:
            break
        n *= 2
    n = max(1, int(n * (seconds / repeats) / max(took, 1e-9)))
    best = float("inf")
    gc.collect()
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - start) / n)
    return best


def measure(seconds: float) -> dict[str, float]:
    """Microseconds per sample of each step (keys are the table's row names)."""
    import orjson

    from observer.reports.client import build_client_reports
    from observer.reports.enrichment import RemoteTrack
    from observer.reports.sfu import build_sfu_reports
    from observer.samples.decoder import make_decoder

    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    entries = [e for e in manifest["files"] if e["format"] == "json" and e["verdict"] == "accept"]
    decoder = make_decoder("json", "2.2.0")
    client_frames = [e for e in entries if e["contains"]["clientSamples"]]
    sets = {
        "all": [(FIXTURES / e["file"]).read_bytes() for e in client_frames],
        "steady": [(FIXTURES / e["file"]).read_bytes() for e in client_frames
                   if e["orderInConnection"] >= STEADY_FROM],
    }
    sfu_frames = [(FIXTURES / e["file"]).read_bytes() for e in entries if e["contains"]["sfuSamples"]]

    def client_samples(frames: list[bytes]) -> list[dict[str, Any]]:
        return [s for f in frames for s in decoder.decode(f).client_samples]

    def matched(sample: dict[str, Any]) -> dict[str, RemoteTrack]:
        return {
            t["trackId"]: RemoteTrack("remote-client", "remote-user", "remote-pc", "remote-track")
            for key in ("inboundAudioTracks", "inboundVideoTracks") for t in sample.get(key) or ()
        }

    out: dict[str, float] = {}
    for name, frames in sets.items():
        samples = client_samples(frames)
        jobs = [(s, matched(s)) for s in samples]

        def loads(frames: list[bytes] = frames) -> None:
            for f in frames:
                orjson.loads(f)

        def decode(frames: list[bytes] = frames) -> None:
            for f in frames:
                decoder.decode(f)

        def build(jobs: list[tuple[dict[str, Any], dict[str, RemoteTrack]]] = jobs) -> None:
            for s, m in jobs:
                build_client_reports(s, service_id="service", media_unit_id="unit", call_id="call", matches=m)

        n = len(samples)
        out[f"orjson.loads ({name})"] = _time_per_call(loads, seconds) / n * 1e6
        out[f"decode ({name})"] = _time_per_call(decode, seconds) / n * 1e6
        out[f"build_client_reports ({name})"] = _time_per_call(build, seconds) / n * 1e6
        out[f"reports per client sample ({name})"] = sum(
            len(build_client_reports(s, service_id="service", media_unit_id="unit", call_id="call", matches=m))
            for s, m in jobs) / n

    sfu_samples = [s for f in sfu_frames for s in decoder.decode(f).sfu_samples]

    def decode_sfu() -> None:
        for f in sfu_frames:
            decoder.decode(f)

    def build_sfu() -> None:
        for s in sfu_samples:
            build_sfu_reports(s, service_id="service", media_unit_id="unit")

    out["decode (sfu)"] = _time_per_call(decode_sfu, seconds) / len(sfu_samples) * 1e6
    out["build_sfu_reports (sfu)"] = _time_per_call(build_sfu, seconds) / len(sfu_samples) * 1e6
    out["reports per sfu sample"] = sum(
        len(build_sfu_reports(s, service_id="service", media_unit_id="unit")) for s in sfu_samples
    ) / len(sfu_samples)
    for name in sets:
        out[f"decode+reports ({name})"] = out[f"decode ({name})"] + out[f"build_client_reports ({name})"]
    return out


def _measure_in_subprocess(seconds: float, package_dir: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(package_dir), "OBSERVER_SHARED_DIR": str(SHARED)}
    done = subprocess.run([sys.executable, __file__, "--json", "--seconds", str(seconds)],
                          env=env, cwd=package_dir, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout)
    if Path(result["package"]).parent != package_dir.resolve():  # e.g. an editable install took precedence
        raise RuntimeError(f"measured {result['package']} instead of the package in {package_dir}")
    rows: dict[str, float] = result["rows"]
    return rows


def _compare(ref: str, seconds: float, rounds: int) -> list[tuple[str, dict[str, float]]]:
    """Both trees measured alternately ``rounds`` times, the best of each row kept (other processes
    on the machine disturb single runs by 20% and more)."""
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "observer"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        columns: list[tuple[str, dict[str, float]]] = [(ref, {}), ("working tree", {})]
        for _ in range(rounds):
            for (_, best), tree in zip(columns, (Path(tmp), ROOT), strict=True):
                for name, value in _measure_in_subprocess(seconds, tree).items():
                    best[name] = min(value, best.get(name, value))
    return columns


def _row(name: str, values: list[float]) -> str:
    unit = "" if name.startswith("reports per") else " us"
    cells = "".join(f"{v:>14.1f}{unit:3}" for v in values)
    if len(values) == 2 and values[0] and not name.startswith("reports per"):
        cells += f"{(values[1] - values[0]) / values[0] * 100:>+10.0f}%"
    return f"{name:38}{cells}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="measuring time per row")
    parser.add_argument("--compare", metavar="REF", help="also measure git revision REF (e.g. HEAD)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating runs of each tree with --compare")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:
        import observer

        package = str(Path(observer.__file__).resolve().parent)
        print(json.dumps({"package": package, "rows": measure(args.seconds)}))
        return
    sys.path.insert(0, str(ROOT))
    if args.compare:
        columns = _compare(args.compare, args.seconds, args.rounds)
    else:
        columns = [("working tree", measure(args.seconds))]
    header = "".join(f"{title:>17}" for title, _ in columns)
    print(f"{'per sample':38}{header}{'change':>11}" if len(columns) == 2 else f"{'per sample':38}{header}")
    for name in columns[-1][1]:
        print(_row(name, [c.get(name, float("nan")) for _, c in columns]))
    for name in ("all", "steady"):
        rates = "".join(f"{1e6 / c[f'decode+reports ({name})']:>17,.0f}" for _, c in columns)
        print(f"{f'samples/s decode+reports ({name})':38}{rates}")


if __name__ == "__main__":
    main()
