"""Ingestion speed and memory: indicators per second and peak memory on generated feeds.

Prints figures; asserts nothing. Every scenario runs in a fresh child process, so its peak
resident memory (``getrusage`` high-water mark) is its own; the figure is shown next to the
child's resident memory right after its imports, so what the work itself costs can be read off.

* ``csv read`` / ``stix read``: ``cti.feeds.read_feed`` alone (parse, refang, validate,
  normalise) over a generated CSV of ``--rows`` rows and a STIX 2.1 bundle of
  ``--stix-objects`` objects;
* ``csv ingest`` / ``stix ingest``: the same files through the engine: a ``data_ingestion`` task
  run by a worker into an embedded SQLite store in a temporary folder (batches, checkpoints,
  quality report);
* ``extract``: free-text extraction from a generated report of ``--text-kb`` KiB, by
  ``cti.indicators.extract`` and by one peer extractor (iocextract) in the same process, on the
  same text; times are taken without tracemalloc, then each is run again under tracemalloc
  for its peak allocation. The peer must be importable: pass ``--peer-site`` with the
  site-packages of a separate virtualenv that has it (never install peers into .venv);
  otherwise the peer line says it was skipped.

Usage (from the repository root)::

    .venv/bin/python bench/ingest.py [--rows 200000] [--stix-objects 50000] [--text-kb 256]
                                     [--peer-site /tmp/iocpeers/lib/python3.11/site-packages]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SEED = 20240611


# -- generated inputs ------------------------------------------------------------------------


def _value(rng: random.Random, i: int) -> tuple[str, str]:
    kind = i % 5
    if kind == 0:
        return (
            "ip",
            f"{rng.randint(1, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{i % 250 + 1}",
        )
    if kind == 1:
        return "domain", f"host{i}-{rng.randint(0, 9999)}.example-{i % 97}.com"
    if kind == 2:
        return "url", f"hxxp://cdn{i}.bad-{i % 89}[.]net/p/{rng.getrandbits(32):08x}.bin"
    if kind == 3:
        return "sha256", f"{rng.getrandbits(256):064x}"
    return "md5", f"{rng.getrandbits(128):032x}"


def write_csv(path: Path, rows: int) -> None:
    """A feed with 2% repeated rows and 1% invalid values, as real feeds have."""
    rng = random.Random(SEED)
    written: list[tuple[str, str]] = []
    with path.open("w", encoding="utf-8") as out:
        out.write("type,indicator,first_seen,confidence\n")
        for i in range(rows):
            if i and i % 50 == 0:
                kind, value = written[rng.randrange(len(written))]  # a repeat
            elif i % 100 == 7:
                kind, value = "ip", f"{300 + i % 50}.1.2.3"  # invalid
            else:
                kind, value = _value(rng, i)
                written.append((kind, value))
            out.write(f"{kind},{value},2024-05-0{i % 9 + 1}T10:00:00Z,{i % 100}\n")


def write_stix(path: Path, objects: int) -> None:
    rng = random.Random(SEED)
    paths = {
        "ip": "ipv4-addr:value",
        "domain": "domain-name:value",
        "url": "url:value",
        "sha256": "file:hashes.'SHA-256'",
        "md5": "file:hashes.MD5",
    }
    with path.open("w", encoding="utf-8") as out:
        out.write('{"type": "bundle", "id": "bundle--00000000-0000-4000-8000-000000000000", ')
        out.write('"objects": [\n')
        for i in range(objects):
            kind, value = _value(rng, i)
            value = value.replace("hxxp", "http").replace("[.]", ".")
            obj = {
                "type": "indicator",
                "spec_version": "2.1",
                "id": f"indicator--{rng.getrandbits(128):032x}"[:-32]
                + f"{i:08x}-0000-4000-8000-{rng.getrandbits(48):012x}",
                "created": "2024-05-01T10:00:00.000Z",
                "modified": "2024-05-01T10:00:00.000Z",
                "pattern": f"[{paths[kind]} = '{value}']",
                "pattern_type": "stix",
                "valid_from": "2024-05-01T10:00:00Z",
                "confidence": i % 100,
            }
            out.write(("," if i else "") + json.dumps(obj) + "\n")
        out.write("]}\n")


_PROSE = (
    "The actor staged the second phase on {domain} and pulled the loader from {url}. "
    "Beacons went to {ip} every sixty seconds; the dropper ({sha256}) wrote a copy of itself "
    "with MD5 {md5} under the user's profile. Analysts also saw routine traffic to "
    "update servers, a printer on the local network and a backup job that ran at night, "
    "none of which was related to the intrusion. "
)


def make_text(kib: int) -> str:
    rng = random.Random(SEED)
    parts: list[str] = []
    size, i = 0, 0
    while size < kib * 1024:
        values = {kind: _value(rng, i * 5 + n)[1] for n, kind in enumerate(("ip", "domain"))}
        values["url"] = _value(rng, i * 5 + 2)[1]
        values["sha256"] = _value(rng, i * 5 + 3)[1]
        values["md5"] = _value(rng, i * 5 + 4)[1]
        values["domain"] = values["domain"].replace(".", "[.]", 1)
        values["ip"] = values["ip"].rsplit(".", 1)[0] + "[.]" + values["ip"].rsplit(".", 1)[1]
        paragraph = _PROSE.format(**values)
        parts.append(paragraph)
        size += len(paragraph)
        i += 1
    return "".join(parts)


# -- measurements (in the child) -------------------------------------------------------------


def _rss_now_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child_read(path: Path, fmt: str) -> dict[str, Any]:
    from phantom_spire.cti.feeds import read_feed

    base = _rss_now_mb()
    started = time.perf_counter()
    accepted = rejected = 0
    for item in read_feed(path, fmt):
        if item.kind == "indicator":
            accepted += 1
        elif item.kind == "rejected":
            rejected += 1
    elapsed = time.perf_counter() - started
    return {"indicators": accepted, "rejected": rejected, "seconds": elapsed, "base_mb": base}


def child_ingest(path: Path, fmt: str, folder: Path) -> dict[str, Any]:
    from phantom_spire.engine.worker import Worker
    from phantom_spire.runtime import Runtime
    from phantom_spire.services.tasks import TaskSpec
    from phantom_spire.settings import Settings

    settings = Settings(database_url=f"sqlite:///{folder / 'bench.db'}", poll_seconds=0.05)
    runtime = Runtime(settings)
    spec = TaskSpec.model_validate(
        {
            "name": "bench ingest",
            "type": "data_ingestion",
            "definition": {"parameters": {"source": str(path), "format": fmt}},
        }
    )
    base = _rss_now_mb()
    started = time.perf_counter()
    task_id = runtime.tasks.create_task(spec, execute=True)["id"]
    worker = Worker(runtime.store, runtime.registry, runtime.settings)

    async def main() -> dict[str, Any]:
        job = asyncio.create_task(worker.run())
        try:
            while True:
                task = await asyncio.to_thread(runtime.store.get_task, task_id)
                if task["status"] in ("completed", "failed", "dead_lettered", "timed_out"):
                    return task
                await asyncio.sleep(0.05)
        finally:
            worker.stop()
            await job

    task = asyncio.run(main())
    elapsed = time.perf_counter() - started
    runtime.close()
    if task["status"] != "completed":
        return {"error": f"task ended {task['status']}: {task.get('error')}"}
    result = task["result"]
    return {
        "indicators": result["stored"]["indicators"],
        "new": result["stored"]["new"],
        "rejected": result["items"].get("rejected", 0),
        "withinFeed": result["quality"]["duplicates"]["withinFeed"],
        "seconds": elapsed,
        "base_mb": base,
    }


def _peer_extractor() -> tuple[str, Any] | tuple[str, None]:
    try:
        import iocextract
    except ImportError as exc:
        return f"iocextract not importable ({exc}); pass --peer-site", None

    def run(text: str) -> int:
        return sum(1 for _ in iocextract.extract_iocs(text, refang=True))

    version = getattr(iocextract, "__version__", "") or _dist_version("iocextract")
    return f"iocextract {version}".strip(), run


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def child_extract(kib: int) -> dict[str, Any]:
    from phantom_spire.cti.indicators import extract

    text = make_text(kib)
    label, peer = _peer_extractor()
    runners: list[tuple[str, Any]] = [("phantom_spire", lambda t: len(extract(t)))]
    out: dict[str, Any] = {"chars": len(text), "tools": []}
    if peer is None:
        out["skipped"] = label
    else:
        runners.append((label, peer))
    for name, fn in runners:
        gc.collect()
        started = time.perf_counter()
        found = fn(text)
        elapsed = time.perf_counter() - started
        gc.collect()
        tracemalloc.start()
        fn(text)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        out["tools"].append(
            {"name": name, "found": found, "seconds": elapsed, "peak_alloc_mb": peak / 2**20}
        )
    return out


def child_main(args: argparse.Namespace) -> None:
    if args.peer_site:
        sys.path.append(args.peer_site)  # after ours: the peer never shadows our dependencies
    kind, fmt = args.child.split("-")
    path = Path(args.file) if args.file else None
    if kind == "read":
        result = child_read(path, fmt)  # type: ignore[arg-type]
    elif kind == "ingest":
        result = child_ingest(path, fmt, Path(args.folder))  # type: ignore[arg-type]
    else:
        result = child_extract(args.text_kb)
    result["peak_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(result))


# -- the parent ------------------------------------------------------------------------------


def run_child(args: argparse.Namespace, name: str, **extra: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", name, "--text-kb", str(args.text_kb)]
    if args.peer_site:
        command += ["--peer-site", args.peer_site]
    for key, value in extra.items():
        command += [f"--{key}", value]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}


def feed_line(label: str, size_mb: float, r: dict[str, Any]) -> str:
    if "error" in r:
        return f"  {label:<12} FAILED: {r['error']}"
    rate = r["indicators"] / r["seconds"] if r["seconds"] else float("nan")
    return (
        f"  {label:<12} {r['indicators']:>8,} indicators in {r['seconds']:6.2f} s "
        f"= {rate:9,.0f} /s   peak RSS {r['peak_mb']:6.0f} MB "
        f"({r['peak_mb'] - r['base_mb']:+.0f} MB over {r['base_mb']:.0f} MB after imports; "
        f"file {size_mb:.1f} MB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000, help="CSV rows")
    parser.add_argument("--stix-objects", type=int, default=50_000, help="STIX objects")
    parser.add_argument("--text-kb", type=int, default=256, help="report size for extraction")
    parser.add_argument(
        "--peer-site",
        default=os.environ.get("BENCH_PEER_SITE"),
        help="site-packages of a separate venv with iocextract (or BENCH_PEER_SITE)",
    )
    parser.add_argument("--no-engine", action="store_true", help="skip the ingest scenarios")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; every scenario in its own process"
    )
    with tempfile.TemporaryDirectory(prefix="spire-bench-ingest-") as tmp:
        folder = Path(tmp)
        csv_path, stix_path = folder / "feed.csv", folder / "bundle.json"
        write_csv(csv_path, args.rows)
        write_stix(stix_path, args.stix_objects)
        print(
            f"\nfeeds: CSV {args.rows:,} rows, STIX bundle {args.stix_objects:,} indicator objects"
        )
        for fmt, path in (("csv", csv_path), ("stix", stix_path)):
            size = path.stat().st_size / 2**20
            read = run_child(args, f"read-{fmt}", file=str(path))
            print(feed_line(f"{fmt} read", size, read))
            if args.no_engine:
                continue
            db = folder / f"db-{fmt}"
            db.mkdir()
            ingest = run_child(args, f"ingest-{fmt}", file=str(path), folder=str(db))
            print(feed_line(f"{fmt} ingest", size, ingest))
            if "error" not in ingest:
                print(
                    f"  {'':<12} (stored {ingest['new']:,} new, {ingest['rejected']:,} rejected, "
                    f"{ingest['withinFeed']:,} repeated within the feed)"
                )

        extract = run_child(args, "extract-text")
        print(f"\nextraction from a {args.text_kb} KiB generated report, same process, same text:")
        if "error" in extract:
            print(f"  FAILED: {extract['error']}")
            return
        for tool in extract["tools"]:
            rate = extract["chars"] / tool["seconds"] / 2**20
            print(
                f"  {tool['name']:<18} {tool['found']:>7,} found in {tool['seconds']:6.2f} s "
                f"= {rate:6.2f} MiB/s   peak allocated {tool['peak_alloc_mb']:6.1f} MB "
                "(tracemalloc, second run)"
            )
        if "skipped" in extract:
            print(f"  peer skipped: {extract['skipped']}")
        print(f"  process peak RSS {extract['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
