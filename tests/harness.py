"""Run the real server as users do (a subprocess), and real peers against it, all bounded in time."""

import importlib.util
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
from pathlib import Path
from typing import List, Optional

from tests.support import ROOT, make_project, require_tool, run_bootstrap

WEBSERVER = ROOT / "server" / "webserver.py"
CLIENT = ROOT / "client" / "client.py"
BANNER = re.compile(r"serving https://\S+?:(\d+)/ \(pid (\d+)\)")


class Identities:
    """Paths of one bootstrap.sh run in a temporary project: the server side and the client side."""

    def __init__(self, project: Path):
        self.project = project
        self.server_cert = project / "server" / "server-cert.pem"
        self.server_key = project / "server" / "server-key.pem"
        self.trusted = project / "server" / "client-cert.pem"
        self.cacert = project / "client" / "server-cert.pem"
        self.client_cert = project / "client" / "client-cert.pem"
        self.client_key = project / "client" / "client-key.pem"

    def server_args(self) -> List[str]:
        return ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key),
                "--tls-client-certs", str(self.trusted)]

    def client_args(self) -> List[str]:
        return ["--cacert", str(self.cacert), "--cert", str(self.client_cert),
                "--key", str(self.client_key)]


def make_identities(owner, *bootstrap_args: str) -> Identities:
    """A fresh project with identities made by the real bootstrap.sh (per test, or per class)."""
    project = make_project(owner)
    result = run_bootstrap(project, *bootstrap_args)
    if result.returncode != 0:
        raise AssertionError(f"bootstrap.sh {' '.join(bootstrap_args)} failed:\n{result.stderr}")
    return Identities(project)


class ServerProcess:
    """server/webserver.py in a subprocess on an ephemeral port; readiness is its banner line."""

    def __init__(self, args: List[str], ready_timeout: float = 10.0,
                 proc: Optional[subprocess.Popen] = None):
        self.proc = proc or subprocess.Popen(
            [sys.executable, "-W", "error", str(WEBSERVER), "--port", "0", *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=ROOT)
        self.lines: "queue.Queue[str]" = queue.Queue()
        self.log: List[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port = self._wait_for_banner(ready_timeout)

    @classmethod
    def adopt(cls, proc: subprocess.Popen) -> "ServerProcess":
        """Watch a server started some other way (text stdout carrying its log)."""
        return cls([], proc=proc)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.log.append(line)
            self.lines.put(line)
        self.proc.stdout.close()

    def _wait_for_banner(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and not self._reader.is_alive():
                    break
                continue
            match = BANNER.search(line)
            if match:
                return int(match.group(1))
        self.kill()
        raise AssertionError("server did not start:\n" + "".join(self.log))

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> str:
        """Return the first log line (past or future) matching pattern, or fail after timeout."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            for line in self.log[seen:]:
                if regex.search(line):
                    return line
            seen = len(self.log)
            time.sleep(0.05)
        raise AssertionError(f"no log line matching {pattern!r} in:\n" + "".join(self.log))

    def output(self) -> str:
        return "".join(self.log)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Signal the server, wait for it to exit, and return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)
        if self.proc.stdout and not self.proc.stdout.closed and not self._reader.is_alive():
            self.proc.stdout.close()


def stopped_at_cleanup(owner, server: ServerProcess) -> ServerProcess:
    """Register the server's stop with a test (or a TestCase class); the stop fails the test
    unless the server exits 0 without a traceback."""

    def stop_and_check() -> None:
        code = server.stop()
        if code != 0 or "Traceback" in server.output():
            raise AssertionError(f"server exited {code}:\n{server.output()}")

    (owner.addClassCleanup if isinstance(owner, type) else owner.addCleanup)(stop_and_check)
    return server


def load_client_module():
    """client/client.py is a script, not a package: load it from its path, for in-process tests."""
    spec = importlib.util.spec_from_file_location("mtls_client", CLIENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def class_scope(cls) -> unittest.TestCase:
    """A TestCase instance whose cleanups run when `cls` finishes: identities shared per class."""
    scope = unittest.TestCase()
    cls.addClassCleanup(scope.doCleanups)
    return scope


def start_server(owner, ids: Identities, *extra: str) -> ServerProcess:
    """Start a server for a test (or, given a class, for all its tests); cleanup stops it and
    fails unless it exits 0 without a traceback."""
    server = ServerProcess(ids.server_args() + list(extra))

    return stopped_at_cleanup(owner, server)


def run(cmd: List[str], timeout: float = 20, input: Optional[str] = None,
        cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run a real peer (curl, openssl, gnutls-cli, our client) with captured text output."""
    return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, stdin=None if input is not None else subprocess.DEVNULL)


def curl(testcase: unittest.TestCase, ids: Identities, port: int, *extra: str,
         path: str = "/", with_cert: bool = True) -> subprocess.CompletedProcess:
    """curl with the client identity (or without it), the way the README shows."""
    exe = require_tool(testcase, "curl")
    cert = ["--cert", str(ids.client_cert), "--key", str(ids.client_key)] if with_cert else []
    return run([exe, "-sS", "--max-time", "10", "--cacert", str(ids.cacert), *cert, *extra,
                f"https://localhost:{port}{path}"])


def run_client(ids: Identities, port: int, *extra: str, path: str = "/") -> subprocess.CompletedProcess:
    """client/client.py as a user runs it."""
    return run([sys.executable, "-W", "error", str(CLIENT), *ids.client_args(), *extra,
                f"https://localhost:{port}{path}"])


def stream_peer(cmd: List[str], request: bytes, timeout: float = 15) -> subprocess.CompletedProcess:
    """Run a TLS command-line peer, send it a request, keep its stdin OPEN until it exits.

    gnutls-cli (and s_client without -ign_eof) answer stdin EOF by closing the connection
    themselves, which would hide whether the server sent close_notify; so stdin stays open.
    """
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdin.write(request)
    proc.stdin.flush()
    try:
        out, err = communicate_keep_stdin(proc, timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        proc.stdin.close()
    return subprocess.CompletedProcess(cmd, proc.returncode, out.decode("utf-8", "replace"),
                                       err.decode("utf-8", "replace"))


def communicate_keep_stdin(proc: subprocess.Popen, timeout: float):
    """Collect stdout and stderr until the process exits, without closing its stdin."""
    chunks = {"out": [], "err": []}

    def pump(stream, key):
        for block in iter(lambda: stream.read1(65536), b""):
            chunks[key].append(block)
        stream.close()

    pumps = [threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
             threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True)]
    for t in pumps:
        t.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    for t in pumps:
        t.join(5)
    return b"".join(chunks["out"]), b"".join(chunks["err"])


def raw_connection(port: int, timeout: float = 5.0) -> socket.socket:
    """A plain TCP connection to the server (for silent, garbage and plain-HTTP peers)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def install_code(ids: Identities) -> None:
    """Copy the server and client programs into the project, so they run on its default files."""
    for side in ("server", "client"):
        for module in (ROOT / side).glob("*.py"):
            shutil.copy2(module, ids.project / side / module.name)


def start_project_server(owner, ids: Identities, *extra: str) -> ServerProcess:
    """`cd server && python3 webserver.py` in the project: default paths, as a user runs it."""
    install_code(ids)
    proc = subprocess.Popen([sys.executable, "-W", "error", "webserver.py", "--port", "0", *extra],
                            cwd=ids.project / "server", stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, stdin=subprocess.DEVNULL)
    server = ServerProcess.adopt(proc)

    return stopped_at_cleanup(owner, server)


def run_project_client(ids: Identities, port: int, *args: str, path: str = "/") -> subprocess.CompletedProcess:
    """The project's own copy of client.py on its default files (install_code first)."""
    return run([sys.executable, "-W", "error", str(ids.project / "client" / "client.py"), *args,
                f"https://localhost:{port}{path}"])


def reload_server(server: ServerProcess) -> None:
    """kill -HUP the server and wait for its log to say how the reload went."""
    done = len([line for line in server.log if "reload" in line])
    server.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len([line for line in server.log if "reload" in line]) > done:
            return
        time.sleep(0.02)
    raise AssertionError("no reload line in the log:\n" + server.output())


__all__ = ["Identities", "ServerProcess", "make_identities", "start_server", "run", "curl",
           "run_client", "stream_peer", "raw_connection", "require_tool",
           "signal", "ROOT", "CLIENT", "WEBSERVER", "install_code", "start_project_server",
           "run_project_client", "reload_server", "stopped_at_cleanup", "load_client_module",
           "class_scope"]


# -- process accounting for the hostile-peer tests (Linux /proc) ------------------------------------

def process_stats(pid: int) -> dict:
    """The server's resident memory (kB), thread count and open file descriptors, from /proc."""
    stats = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                stats[key] = int(value.split()[0])
    return {"rss_kb": stats["VmRSS"], "threads": stats["Threads"],
            "fds": len(os.listdir(f"/proc/{pid}/fd"))}


def settled_stats(pid: int, timeout: float = 5.0, interval: float = 0.2) -> dict:
    """process_stats once threads and fds have stopped changing (two equal reads), or at timeout."""
    deadline = time.monotonic() + timeout
    last = process_stats(pid)
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = process_stats(pid)
        if (now["threads"], now["fds"]) == (last["threads"], last["fds"]):
            return now
        last = now
    return last


def require_proc() -> None:
    """Skip where /proc/<pid>/status is missing (not Linux): the resource tests read it."""
    if not Path(f"/proc/{os.getpid()}/status").exists():
        raise unittest.SkipTest("needs Linux /proc to read a process's memory, threads and fds")


__all__ += ["process_stats", "settled_stats", "require_proc"]
