"""Side-by-side A/B of two or more server trees: server CPU per keep-alive request and per full
mutual-TLS connection, each server started and stopped in turn (A, B, A, B ...) so that whatever
else the machine is doing lands on every side alike.

    $ git archive <commit> server | tar -x -C /tmp/old
    $ python3 -m bench.ab server/webserver.py /tmp/old/server/webserver.py
    $ python3 -m bench.ab --quick server/webserver.py server/webserver.py   # a smoke test

It reuses `make bench`'s identities, server runner, load processes and /proc CPU reading; the
ratio column is each server's median over the first server's.
"""

import argparse
import functools
import json
import os
import shlex
import shutil
import statistics
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from bench.bench import Bench, Settings, aligned, fmt, loadavg, machine, summarize
from bench.load import LoadWorkers
from bench.targets import BenchError, Identities, OurServer, describe_source, make_identities

WORKERS = 4
# name, load kind, concurrency, unit: what each server is asked to do every round, in this order.
PHASES = (("keepalive", "keepalive", 8, "us_cpu_per_request"),
          ("handshake", "handshake", 4, "us_cpu_per_connection"))


@dataclass(frozen=True)
class Plan:
    """How many rounds, and how long each phase of a round runs."""

    rounds: int
    duration: float


FULL = Plan(rounds=3, duration=2.0)
QUICK = Plan(rounds=1, duration=0.2)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench.ab",
        description="Server CPU per keep-alive request and per full mTLS connection, two or more "
                    "server trees side by side in interleaved rounds.")
    parser.add_argument("servers", nargs="+", type=Path, metavar="WEBSERVER",
                        help="a webserver.py to measure; the first is the one the ratios are to")
    parser.add_argument("--rounds", type=int, metavar="N",
                        help=f"rounds, each starting every server once (default: {FULL.rounds}; "
                             f"--quick: {QUICK.rounds})")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help=f"load per phase (default: {FULL.duration}; --quick: {QUICK.duration})")
    parser.add_argument("--quick", action="store_true",
                        help="one round of tiny phases (seconds, not minutes): a smoke test")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    args = parser.parse_args(argv)
    if len(args.servers) < 2:
        parser.error("give at least two webserver.py paths to compare (the same one twice "
                     "shows the noise floor)")
    for server in args.servers:
        if not server.is_file():
            parser.error(f"no such file: {server}")
    if args.rounds is not None and not 1 <= args.rounds <= 50:
        parser.error(f"--rounds must be 1 to 50, not {args.rounds}")
    if args.duration is not None and not 0 < args.duration <= 60:
        parser.error(f"--duration must be more than 0 and at most 60 seconds, not {args.duration}")
    return args


def settings_for(plan: Plan) -> Settings:
    """The bench's phase settings for this plan: the duration bounds each phase, not a cap."""
    return Settings(duration=plan.duration, handshake_cap=1_000_000, request_cap=10_000_000,
                    hold=0, trusted_many=1, warmup=40 if plan.duration >= 1 else 4,
                    quiet=0.05 if plan.duration >= 1 else 0.02, rounds=plan.rounds)


def run_rounds(plan: Plan, servers: List[Path], ids: Identities, workers: LoadWorkers,
               workdir: Path) -> List[Dict[str, List[dict]]]:
    """Every round starts each server in turn, runs each phase against it, and stops it."""
    bench = Bench(settings_for(plan), workers, workdir, servers[0])
    samples: List[Dict[str, List[dict]]] = [{name: [] for name, *_ in PHASES} for _ in servers]
    for round_no in range(1, plan.rounds + 1):
        for index, server in enumerate(servers):
            label = f"{letter(index)}-round{round_no}"
            kind = functools.partial(OurServer, webserver=server)
            with bench.serving(kind, ids, ids.trusted, label) as target:
                for name, load, concurrency, _ in PHASES:
                    result = summarize([bench.sample(target, ids, load, "1.3", concurrency,
                                                     plan.duration, 10_000_000)])
                    samples[index][name].append(result)
                    print(f"bench.ab: round {round_no}/{plan.rounds} {letter(index)} {name:<9} "
                          f"{fmt(result['cost'])} µs CPU ({result['n']:,} in "
                          f"{result['seconds']:.1f} s, {result['errors']} errors)",
                          file=sys.stderr, flush=True)
    return samples


def spread(results: List[dict], unit: str) -> dict:
    """Median, min and max of the per-round costs of one phase, with what went into them."""
    costs = [r["cost"] for r in results]
    known = [c for c in costs if c is not None]
    return {"unit": unit, "rounds": costs,
            "median": round(statistics.median(known), 1) if known else None,
            "min": min(known) if known else None, "max": max(known) if known else None,
            "n": [r["n"] for r in results], "errors": sum(r["errors"] for r in results),
            "error_samples": [s for r in results for s in r["error_samples"]][:3],
            "suites": sorted({r["suite"] for r in results if r["suite"]})}


def with_ratios(entries: List[dict]) -> List[dict]:
    """Each phase's median over the first server's (1.0 for the first when it was measured)."""
    for name, *_ in PHASES:
        base = entries[0][name]["median"]
        for entry in entries:
            mine = entry[name]["median"]
            entry[name]["ratio"] = (round(mine / base, 2) if base and mine is not None else None)
    return entries


def letter(index: int) -> str:
    return string.ascii_uppercase[index] if index < 26 else f"S{index + 1}"


def render(report: dict) -> str:
    """The report as plain text: machine, command, plan, one row per server, notes."""
    m, s = report["machine"], report["settings"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {m['os']}",
             f"         Python {m['python']} ({m['python_openssl']})",
             f"command: {report['command']}",
             f"rounds:  {s['rounds']}, each server started in turn (A, B, A, B ...); per start "
             f"{s['duration']} s keep-alive GET / at c=8,",
             f"         then {s['duration']} s new mTLS connection + GET / + close at c=4 (TLS 1.3); "
             f"{report['workers']} load processes;",
             f"         took {report['total_seconds']:.0f} s; load average before "
             f"{report['loadavg_before']}, after {report['loadavg_after']}", ""]
    header = ["", "server", "keep-alive µs CPU/req", "min-max", "ratio",
              "full conn µs CPU/conn", "min-max", "ratio"]
    table = [header]
    for entry in report["servers"]:
        row = [entry["id"], entry["source"]]
        for name, *_ in PHASES:
            part = entry[name]
            row += [fmt(part["median"]), f"{fmt(part['min'])}-{fmt(part['max'])}",
                    fmt(part["ratio"], 2)]
        table.append(row)
    lines.extend(aligned(table, left={0, 1}))
    lines.append("")
    lines.extend(report["notes"])
    return "\n".join(lines)


def notes(entries: List[dict], cpu_available: bool) -> List[str]:
    """How to read the table, and anything that went wrong."""
    out = ["cost: the server's utime+stime, all threads, from /proc/<pid>/stat (10 ms ticks), per",
           "  completed unit; the median over rounds, min-max beside it; ratio = median / A's median.",
           "  Compare a tree with itself first: the spread it shows is the noise floor."]
    if not cpu_available:
        out.append("NOTE: no /proc here, so server CPU was not measured (shown as -).")
    for entry in entries:
        for name, *_ in PHASES:
            part = entry[name]
            if part["errors"]:
                out.append(f"NOTE: {entry['id']} {name}: {part['errors']} failed units, e.g. "
                           f"{part['error_samples'][0]}")
            if len(part["suites"]) > 1:
                out.append(f"NOTE: {entry['id']} {name}: negotiated {', '.join(part['suites'])}")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    plan = QUICK if args.quick else FULL
    plan = Plan(rounds=args.rounds or plan.rounds,
                duration=args.duration if args.duration is not None else plan.duration)
    for tool in ("openssl", "bash"):
        if shutil.which(tool) is None:
            print(f"bench.ab: error: {tool} not found; install it (Debian/Ubuntu: apt install {tool})",
                  file=sys.stderr)
            return 2
    servers = [path.resolve() for path in args.servers]
    sources = [describe_source(path) for path in servers]  # before the run: trees may change
    command = shlex.join(["python3", "-m", "bench.ab", *(sys.argv[1:] if argv is None else argv)])
    started, load_before = time.monotonic(), loadavg()
    try:
        with tempfile.TemporaryDirectory(prefix="mtls-bench-ab-") as tmp:
            workdir = Path(tmp)
            print(f"bench.ab: minting EC identities in {workdir}", file=sys.stderr, flush=True)
            ids = make_identities(workdir, "ec")
            workers = LoadWorkers(WORKERS)
            try:
                samples = run_rounds(plan, servers, ids, workers, workdir)
            finally:
                workers.close()
    except BenchError as exc:
        print(f"bench.ab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench.ab: interrupted; servers and load processes stopped", file=sys.stderr)
        return 130
    entries = with_ratios([
        dict({"id": letter(i), "path": str(path), "source": source},
             **{name: spread(samples[i][name], unit) for name, _, _, unit in PHASES})
        for i, (path, source) in enumerate(zip(servers, sources))])
    cpu_available = Path(f"/proc/{os.getpid()}/stat").exists()
    report = {"machine": machine(), "command": command,
              "settings": {"rounds": plan.rounds, "duration": plan.duration, "tls": "1.3",
                           "concurrency": {name: c for name, _, c, _ in PHASES}},
              "workers": WORKERS, "total_seconds": round(time.monotonic() - started, 1),
              "loadavg_before": load_before, "loadavg_after": loadavg(),
              "cpu_measured": cpu_available, "servers": entries,
              "notes": notes(entries, cpu_available)}
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # spawned load processes import this module too; they must not run it
    raise SystemExit(main())
