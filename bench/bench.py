"""`make bench`: what one mutually authenticated connection and request cost our server, beside
openssl s_server doing the same handshakes, in one table (and --json).

    $ python3 -m bench              # the whole table, under 3 minutes on 2 cores
    $ python3 -m bench --quick      # every row, tiny phases: a smoke test in seconds

Server CPU per unit of work (utime+stime of all its threads, from /proc/<pid>/stat, read before and
after each phase) is the figure; wall-clock rates and latencies are secondary, since the load
generator shares the machine.
"""

import argparse
import contextlib
import functools
import json
import os
import platform
import shlex
import shutil
import ssl
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set

from bench.load import LoadWorkers, percentile
from bench.targets import (WEBSERVER, BenchError, Identities, OurServer, ReferenceServer,
                           Target, describe_source, make_identities, make_trusted_bundle,
                           openssl_version)

CONCURRENCY = (1, 8, 64)
CLIENT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Settings:
    """How long and how much each phase may run."""

    duration: float        # seconds of load per phase
    handshake_cap: int     # at most this many connections per handshake phase
    request_cap: int       # at most this many requests per keep-alive phase
    hold: int              # idle authenticated connections held for the RSS row
    trusted_many: int      # size of the big trusted set
    warmup: int            # unmeasured connections before a server's first phase
    quiet: float           # the server counts as idle after this long without spending CPU
    rounds: int            # handshake rows alternate ours/reference this many times


FULL = Settings(duration=3.0, handshake_cap=50_000, request_cap=500_000, hold=200,
                trusted_many=1000, warmup=40, quiet=0.05, rounds=3)
QUICK = Settings(duration=0.1, handshake_cap=100, request_cap=1_000, hold=20,
                 trusted_many=100, warmup=4, quiet=0.02, rounds=1)


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python3 -m bench",
        description="Server CPU per mutual-TLS connection and request, against openssl s_server.")
    parser.add_argument("--quick", action="store_true",
                        help="every row with tiny phases (seconds, not minutes): a smoke test")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results here")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help=f"load per phase (default: {FULL.duration}; --quick: {QUICK.duration})")
    parser.add_argument("--workers", type=int, default=4, metavar="N",
                        help="load-generating processes (default: %(default)s)")
    parser.add_argument("--server", type=Path, default=WEBSERVER, metavar="PATH",
                        help="the webserver.py to measure, e.g. an older tree's for a before/after "
                             "table (default: this checkout's server/webserver.py)")
    args = parser.parse_args(argv)
    if not args.server.is_file():
        parser.error(f"--server: no such file: {args.server}")
    if args.duration is not None and not 0 < args.duration <= 60:
        parser.error(f"--duration must be more than 0 and at most 60 seconds, not {args.duration}")
    if not 1 <= args.workers <= 64:
        parser.error(f"--workers must be 1 to 64, not {args.workers}")
    return args


def machine() -> Dict[str, object]:
    """What the numbers were measured on."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpu": model, "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "python_openssl": ssl.OPENSSL_VERSION,
            "openssl_cli": openssl_version()}


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: whether something else was using the machine."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


class Bench:
    """Runs measured phases against targets and turns them into report rows."""

    def __init__(self, settings: Settings, workers: LoadWorkers, workdir: Path, webserver: Path):
        self.ours = functools.partial(OurServer, webserver=webserver)
        self.settings = settings
        self.workers = workers
        self.workdir = workdir
        self.rows: List[dict] = []

    @contextlib.contextmanager
    def serving(self, kind, ids: Identities, trusted: Path, label: str) -> Iterator[Target]:
        """Start a server for the block, warm it up, and always stop it afterwards."""
        target = kind(ids, trusted, self.workdir / f"{label}.log")
        try:
            self.workers.run(spec_for(target, ids, "handshake", "1.3", self.settings.duration),
                             concurrency=2, cap=self.settings.warmup)
            yield target
        finally:
            target.stop()

    def sample(self, target: Target, ids: Identities, kind: str, tls: Optional[str],
               concurrency: int, duration: float, cap: int) -> dict:
        """One slice of load: server CPU before, load for `duration` or `cap` units, CPU after."""
        cpu: Dict[str, Optional[float]] = {}
        result = self.workers.run(
            spec_for(target, ids, kind, tls, duration), concurrency=concurrency, cap=cap,
            on_ready=lambda: cpu.update(before=target.stats.settled_cpu(self.settings.quiet)),
            on_done=lambda: cpu.update(after=target.stats.settled_cpu(self.settings.quiet)))
        result["cpu"] = (cpu["after"] - cpu["before"]
                         if cpu["before"] is not None and cpu["after"] is not None else None)
        return result

    def measure(self, target: Target, ids: Identities, kind: str, tls: Optional[str],
                concurrency: int) -> dict:
        """A keep-alive phase: one slice of the whole phase time."""
        return summarize([self.sample(target, ids, kind, tls, concurrency, self.settings.duration,
                                      self.settings.request_cap)])

    def handshake_row(self, row_id: str, label: str, ours: Target, ref: Target,
                      ids: Identities, tls: str, concurrency: int, trusted: int) -> None:
        """Full handshakes against our server and the reference, in alternating slices, so a
        neighbour's load on a shared machine lands on both sides of the ratio alike."""
        rounds = self.settings.rounds
        duration, cap = self.settings.duration / rounds, self.settings.handshake_cap // rounds
        slices: Dict[str, List[dict]] = {"ours": [], "ref": []}
        for _ in range(rounds):
            for side, target in (("ours", ours), ("ref", ref)):
                slices[side].append(self.sample(target, ids, "handshake", tls, concurrency,
                                                duration, cap))
        mine, theirs = summarize(slices["ours"]), summarize(slices["ref"])
        ratio = (round(mine["cost"] / theirs["cost"], 2)
                 if mine["cost"] is not None and theirs["cost"] else None)
        self.add(dict(mine, id=row_id, label=label, kind="handshake", key_type=ids.key_type,
                      tls=tls, concurrency=concurrency, trusted=trusted,
                      unit="us_cpu_per_connection", reference=theirs, ratio=ratio))

    def keepalive_row(self, ours: Target, ids: Identities, concurrency: int) -> None:
        mine = self.measure(ours, ids, "keepalive", None, concurrency)
        self.add(dict(mine, id=f"keepalive/c{concurrency}",
                      label=f"keep-alive {key_label(ids)} {mine['suite'][:7]:<7} c={concurrency}",
                      kind="keepalive", key_type=ids.key_type, tls=mine["suite"][5:8] or None,
                      concurrency=concurrency, trusted=1, unit="us_cpu_per_request"))

    def rss_rows(self, ids: Identities) -> None:
        """RSS of a fresh, warmed-up server idle, then holding many idle authenticated connections."""
        with self.serving(self.ours, ids, ids.trusted, "rss") as server:
            server.stats.settled_cpu(self.settings.quiet)
            idle = server.stats.rss_kb()
            held: Dict[str, Optional[int]] = {}

            def on_ready() -> None:
                server.stats.settled_cpu(self.settings.quiet)
                held["rss"] = server.stats.rss_kb()
                held["threads"] = server.stats.threads()

            self.workers.run(dict(spec_for(server, ids, "hold", None, 0.0)),
                             hold=self.settings.hold, on_ready=on_ready)
        count = self.settings.hold
        per_conn = (round((held["rss"] - idle) / count, 1)
                    if idle is not None and held["rss"] is not None else None)
        self.add({"id": "rss/idle", "label": "RSS idle (warmed up)", "kind": "rss", "n": 1,
                  "cost": idle, "unit": "kB_rss"})
        threads = held["threads"]
        self.add({"id": "rss/held", "label": f"RSS, {count} idle mTLS conns held ({threads} threads)",
                  "kind": "rss", "n": count, "cost": per_conn, "unit": "kB_rss_per_connection",
                  "rss_idle_kb": idle, "rss_held_kb": held["rss"], "server_threads": threads})

    def add(self, row: dict) -> None:
        self.rows.append(row)
        ref = row.get("reference")
        print(f"bench: {row['label']:<44} {fmt(row.get('cost'))} {UNITS[row['unit']]}"
              + (f"  (reference {fmt(ref['cost'])}, ratio {fmt(row['ratio'], 2)})" if ref else "")
              + (f"  {row['errors']} errors: {row['error_samples'][0]}" if row.get("errors") else ""),
              file=sys.stderr, flush=True)

    def run(self, ec: Identities, rsa: Identities, many: Path) -> None:
        """Every row of the table, each server group started and stopped around its rows."""
        for ids in (ec, rsa):
            with self.serving(self.ours, ids, ids.trusted, f"ours-{ids.key_type}") as ours, \
                    self.serving(ReferenceServer, ids, ids.trusted, f"ref-{ids.key_type}") as ref:
                for tls in ("1.3", "1.2"):
                    for c in CONCURRENCY:
                        self.handshake_row(f"handshake/{ids.key_type}/tls{tls}/c{c}",
                                           f"handshake  {key_label(ids)} TLSv{tls} c={c}",
                                           ours, ref, ids, tls, c, trusted=1)
                if ids is ec:
                    for c in CONCURRENCY:
                        self.keepalive_row(ours, ids, c)
                    self.handshake_row("trust/1", f"handshake  {key_label(ids)} TLSv1.3 c=8, "
                                       "1 trusted", ours, ref, ids, "1.3", 8, trusted=1)
            if ids is ec:
                total = self.settings.trusted_many
                with self.serving(self.ours, ids, many, "ours-many") as ours, \
                        self.serving(ReferenceServer, ids, many, "ref-many") as ref:
                    self.handshake_row("trust/many", f"handshake  {key_label(ids)} TLSv1.3 c=8, "
                                       f"{total} trusted", ours, ref, ids, "1.3", 8, trusted=total)
        self.rss_rows(ec)


def summarize(slices: List[dict]) -> dict:
    """One side of a row from its slices: totals, rate, CPU per unit, latency percentiles."""
    latencies = [x for part in slices for x in part["latencies"]]
    n, seconds = len(latencies), sum(part["seconds"] for part in slices)
    cpus = [part["cpu"] for part in slices]
    used = None if None in cpus else sum(cpus)
    return {"n": n, "errors": sum(part["errors"] for part in slices),
            "error_samples": [s for part in slices for s in part["samples"]][:3],
            "seconds": round(seconds, 3),
            "per_second": round(n / seconds, 1) if seconds > 0 else 0.0,
            "server_cpu_s": None if used is None else round(used, 3),
            "cost": None if used is None or not n else round(used * 1e6 / n, 1),
            "p50_ms": ms(percentile(latencies, 0.50)), "p99_ms": ms(percentile(latencies, 0.99)),
            "suite": next((part["suite"] for part in slices if part["suite"]), "")}


def spec_for(target: Target, ids: Identities, kind: str, tls: Optional[str],
             duration: float) -> dict:
    """What a load process needs to know for one phase (plain data: it crosses a pipe)."""
    return {"kind": kind, "tls": tls, "port": target.port, "duration": duration,
            "timeout": CLIENT_TIMEOUT, "cacert": str(ids.cacert),
            "client_cert": str(ids.client_cert), "client_key": str(ids.client_key)}


def key_label(ids: Identities) -> str:
    return {"ec": "EC ", "rsa": "RSA"}.get(ids.key_type, ids.key_type)


def ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(seconds * 1000, 3)


UNITS = {"us_cpu_per_connection": "µs CPU/conn", "us_cpu_per_request": "µs CPU/req",
         "kB_rss": "kB RSS", "kB_rss_per_connection": "kB RSS/conn"}


def aligned(table: List[List[str]], left: Set[int]) -> List[str]:
    """Rows of cells as text columns: the `left` columns flush left, numbers flush right."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(width) if i in left else cell.rjust(width)
                      for i, (cell, width) in enumerate(zip(row, widths))).rstrip()
            for row in table]


def fmt(value, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def render(report: dict) -> str:
    """The report as plain text: machine and command on top, then one aligned table."""
    m = report["machine"]
    lines = [f"machine: {m['cpu']}, {m['cores']} cores, {m['os']}",
             f"         Python {m['python']} ({m['python_openssl']}); CLI {m['openssl_cli']}",
             f"command: {report['command']}",
             f"server:  {report['server']}",
             f"phases:  {report['settings']['duration']} s of load per row and side (handshake rows: "
             f"{report['settings']['rounds']} slices alternating ours and ref), at most "
             f"{report['settings']['handshake_cap']:,} connections or "
             f"{report['settings']['request_cap']:,} requests;",
             f"         {report['workers']} load processes; took {report['total_seconds']:.0f} s; "
             f"load average before {report['loadavg_before']}, after {report['loadavg_after']}", ""]
    header = ["", "n", "err", "per s", "server cost", "unit", "p50 ms", "p99 ms",
              "ref cost", "ref per s", "ours/ref"]
    table = [header]
    for row in report["rows"]:
        ref = row.get("reference") or {}
        table.append([row["label"], fmt(row.get("n")), fmt(row.get("errors")),
                      fmt(row.get("per_second")), fmt(row.get("cost")), UNITS[row["unit"]],
                      fmt(row.get("p50_ms"), 2), fmt(row.get("p99_ms"), 2),
                      fmt(ref.get("cost")) if ref else "", fmt(ref.get("per_second")) if ref else "",
                      fmt(row.get("ratio"), 2) if ref else ""])
    lines.extend(aligned(table, left={0, 5}))
    lines.append("")
    lines.extend(report["notes"])
    return "\n".join(lines)


def notes(rows: List[dict], cpu_available: bool) -> List[str]:
    """What a reader needs to read the table right, including anything that went wrong."""
    out = ["server cost: the server's utime+stime, all threads, from /proc/<pid>/stat (10 ms ticks),",
           "  per completed unit. handshake = new TCP + full mTLS handshake + GET / + read to close;",
           "  keep-alive = one GET / on an open authenticated connection. ref = openssl s_server -www",
           "  -Verify 1 -verify_return_error -no_ca_names, same identities and load: it serves one",
           "  connection at a time and answers with a ~7 kB status page (ours: 12 bytes), so its",
           "  per s at c>1 is queueing. Our server also writes one log line per request (to a file)."]
    if not cpu_available:
        out.append("NOTE: no /proc here, so server CPU and RSS were not measured (shown as -).")
    for row in rows:
        ref = row.get("reference")
        if ref and ref.get("suite") != row.get("suite"):
            out.append(f"NOTE: {row['id']}: ours negotiated {row['suite']}, "
                       f"the reference {ref['suite']}.")
        for who, part in (("ours", row), ("reference", ref or {})):
            if part.get("errors"):
                out.append(f"NOTE: {row['id']} ({who}): {part['errors']} failed units, e.g. "
                           f"{part['error_samples'][0]}")
    return out


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.duration is not None:
        settings = Settings(**dict(asdict(settings), duration=args.duration))
    for tool in ("openssl", "bash"):
        if shutil.which(tool) is None:
            print(f"bench: error: {tool} not found; install it (Debian/Ubuntu: apt install {tool})",
                  file=sys.stderr)
            return 2
    command = shlex.join(["python3", "-m", "bench", *(sys.argv[1:] if argv is None else argv)])
    started, load_before = time.monotonic(), loadavg()
    server = describe_source(args.server)  # before the run: the tree may change under a long run
    try:
        with tempfile.TemporaryDirectory(prefix="mtls-bench-") as tmp:
            workdir = Path(tmp)
            print(f"bench: minting EC and RSA identities and {settings.trusted_many} trusted "
                  f"certificates in {workdir}", file=sys.stderr, flush=True)
            with ThreadPoolExecutor(max_workers=2) as pool:
                rsa_job = pool.submit(make_identities, workdir, "rsa")
                ec = make_identities(workdir, "ec")
                many = make_trusted_bundle(workdir, ec, settings.trusted_many)
                rsa = rsa_job.result()
            workers = LoadWorkers(args.workers)
            try:
                bench = Bench(settings, workers, workdir, args.server.resolve())
                bench.run(ec, rsa, many)
            finally:
                workers.close()
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; servers and load processes stopped", file=sys.stderr)
        return 130
    cpu_available = Path(f"/proc/{os.getpid()}/stat").exists()
    report = {"machine": machine(), "command": command, "server": server,
              "settings": asdict(settings),
              "workers": args.workers, "total_seconds": round(time.monotonic() - started, 1),
              "loadavg_before": load_before, "loadavg_after": loadavg(),
              "cpu_measured": cpu_available, "rows": bench.rows,
              "notes": notes(bench.rows, cpu_available)}
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0
