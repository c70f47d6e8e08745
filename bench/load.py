"""Load generators: separate processes (spawned, so their GIL is not the server's bottleneck), each
running a few client threads, driven phase by phase over a pipe so the parent can read the server's
CPU exactly while the load runs.

Per phase a worker gets a spec, prepares (keep-alive and hold phases open and authenticate their
connections here, outside the measured window), says "ready", runs on "go" until its deadline or
its cap, reports, and closes its connections on "release".
"""

import itertools
import math
import multiprocessing
import signal
import socket
import ssl
import threading
import time
from typing import Callable, Dict, List, Optional

from bench.targets import TLS12_CIPHERS, BenchError

REQUEST_CLOSE = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
REQUEST_KEEP = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def client_context(spec: dict) -> ssl.SSLContext:
    """The load client's policy: verify the server (never CERT_NONE) and present the client identity."""
    context = ssl.create_default_context(cafile=spec["cacert"])
    context.load_cert_chain(spec["client_cert"], spec["client_key"])
    context.set_ciphers(TLS12_CIPHERS)
    if spec.get("tls"):
        context.minimum_version = context.maximum_version = VERSIONS[spec["tls"]]
    return context


def connect(context: ssl.SSLContext, spec: dict) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", spec["port"]), timeout=spec["timeout"])
    try:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return context.wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def check_status(head: bytes) -> None:
    if head[9:12] != b"200":
        raise ValueError(f"unexpected response {head[:40]!r}")


def full_exchange(context: ssl.SSLContext, spec: dict) -> str:
    """New connection, full handshake, GET /, read to the end, close; returns the suite negotiated."""
    with connect(context, spec) as tls:
        tls.sendall(REQUEST_CLOSE)
        data = bytearray()
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            data += chunk
        check_status(bytes(data[:16]))
        return f"{tls.version()} {tls.cipher()[0]}"


def read_response(tls: ssl.SSLSocket, buffer: bytearray) -> None:
    """Read one Content-Length framed HTTP response from buffer + socket, leaving what follows."""
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("server closed a keep-alive connection")
        buffer += chunk
    head = bytes(buffer[:end])
    check_status(head)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    total = end + 4 + length
    while len(buffer) < total:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("server closed mid-response")
        buffer += chunk
    del buffer[:total]


class Tally:
    """What one thread saw: latencies of completed units, failures, and the suite negotiated."""

    def __init__(self):
        self.latencies: List[float] = []
        self.errors = 0
        self.samples: List[str] = []
        self.suite = ""

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        message = f"{type(exc).__name__}: {exc}"
        if len(self.samples) < 3 and message not in self.samples:
            self.samples.append(message)


class Phase:
    """One worker's share of a phase: `threads` clients of one kind, or `hold` idle connections."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.context = client_context(spec)
        self.kind = spec["kind"]
        self.claims = itertools.count()  # next() is atomic under the GIL: a shared cap, no lock
        self.connections: List[ssl.SSLSocket] = []
        self.buffers: List[bytearray] = []

    def prepare(self) -> None:
        opened = self.spec["threads"] if self.kind == "keepalive" else self.spec.get("hold", 0)
        for _ in range(opened):
            tls = connect(self.context, self.spec)
            self.connections.append(tls)
            self.buffers.append(bytearray())
            tls.sendall(REQUEST_KEEP)  # authenticated and one request served, as the phase says
            read_response(tls, self.buffers[-1])

    def run(self) -> dict:
        deadline = time.monotonic() + self.spec["duration"]
        tallies = [Tally() for _ in range(self.spec["threads"])]
        if self.kind == "handshake":
            targets = [lambda t=t: self.handshakes(t, deadline) for t in tallies]
        elif self.kind == "keepalive":
            targets = [lambda t=t, i=i: self.requests(t, i, deadline) for i, t in enumerate(tallies)]
        else:
            targets = []
        threads = [threading.Thread(target=target, daemon=True) for target in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {"latencies": [x for t in tallies for x in t.latencies],
                "errors": sum(t.errors for t in tallies),
                "samples": [s for t in tallies for s in t.samples][:3],
                "suite": next((t.suite for t in tallies if t.suite), "")}

    def more(self, deadline: float) -> bool:
        return time.monotonic() < deadline and next(self.claims) < self.spec["cap"]

    def handshakes(self, tally: Tally, deadline: float) -> None:
        while self.more(deadline):
            start = time.perf_counter()
            try:
                tally.suite = full_exchange(self.context, self.spec)
            except (OSError, ValueError) as exc:
                tally.fail(exc)
                continue
            tally.latencies.append(time.perf_counter() - start)

    def requests(self, tally: Tally, index: int, deadline: float) -> None:
        tls, buffer = self.connections[index], self.buffers[index]
        tally.suite = f"{tls.version()} {tls.cipher()[0]}"
        while self.more(deadline):
            start = time.perf_counter()
            try:
                tls.sendall(REQUEST_KEEP)
                read_response(tls, buffer)
            except (OSError, ValueError) as exc:
                tally.fail(exc)
                return  # this connection is broken; the others carry on
            tally.latencies.append(time.perf_counter() - start)

    def close(self) -> None:
        for tls in self.connections:
            tls.close()
        self.connections.clear()


def worker_main(conn) -> None:
    """A load process: run phases as the parent says, until "stop" or the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    try:
        while True:
            message = conn.recv()
            if message[0] == "stop":
                break
            phase = None
            try:
                phase = Phase(message[1])
                phase.prepare()
            except (OSError, ValueError) as exc:
                if phase:
                    phase.close()
                conn.send(("error", f"{type(exc).__name__}: {exc}"))
                continue
            conn.send(("ready", None))
            if conn.recv()[0] != "go":  # the parent gave up on this phase (another worker failed)
                phase.close()
                break
            conn.send(("done", phase.run()))
            conn.recv()  # release
            phase.close()
            conn.send(("released", None))
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        conn.close()


def split(total: int, parts: int) -> List[int]:
    """total spread as evenly as possible over parts (earlier parts get the remainder)."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class LoadWorkers:
    """A fixed set of spawned load processes, reused for every phase; close() always reaps them."""

    def __init__(self, count: int):
        context = multiprocessing.get_context("spawn")
        self.pipes, self.procs = [], []
        try:
            for i in range(count):
                parent, child = context.Pipe()
                proc = context.Process(target=worker_main, args=(child,), name=f"bench-load-{i}",
                                       daemon=True)
                proc.start()
                child.close()
                self.pipes.append(parent)
                self.procs.append(proc)
        except BaseException:
            self.close()
            raise

    def run(self, spec: dict, concurrency: int = 0, hold: int = 0, cap: int = 0,
            on_ready: Callable[[], None] = lambda: None,
            on_done: Callable[[], None] = lambda: None) -> Dict:
        """Run one phase over every worker with a share of it; on_ready and on_done bracket the load."""
        threads, holds = split(concurrency, len(self.pipes)), split(hold, len(self.pipes))
        active = []
        for pipe, share, held in zip(self.pipes, threads, holds):
            if share or held:
                part_cap = max(1, cap * share // concurrency) if concurrency else 0
                pipe.send(("phase", dict(spec, threads=share, hold=held, cap=part_cap)))
                active.append(pipe)
        wait = spec["timeout"] * 2 + spec["duration"] + 30
        errors = [reply[1] for reply in self._gather(active, wait) if reply[0] == "error"]
        if errors:
            raise BenchError(f"load clients could not connect to port {spec['port']}: {errors[0]}")
        on_ready()
        started = time.perf_counter()
        for pipe in active:
            pipe.send(("go",))
        results = [reply[1] for reply in self._gather(active, wait)]
        seconds = time.perf_counter() - started
        on_done()
        for pipe in active:
            pipe.send(("release",))
        self._gather(active, wait)
        return {"seconds": seconds,
                "latencies": [x for r in results for x in r["latencies"]],
                "errors": sum(r["errors"] for r in results),
                "samples": [s for r in results for s in r["samples"]][:3],
                "suite": next((r["suite"] for r in results if r["suite"]), "")}

    def _gather(self, pipes, timeout: float) -> list:
        replies = []
        for pipe in pipes:
            if not pipe.poll(timeout):
                raise BenchError(f"a load process gave no answer within {timeout:.0f} s")
            replies.append(pipe.recv())
        return replies

    def close(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("stop",))
            except OSError:
                pass
        for proc in self.procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for pipe in self.pipes:
            pipe.close()
        self.pipes, self.procs = [], []


def percentile(values: List[float], fraction: float) -> Optional[float]:
    """Nearest-rank percentile of values, or None for none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]
