"""`make` and `make demo` as a newcomer runs them, in a temporary copy of the project.

The demo must say Hello world! twice (Python client, curl) and leave nothing running, and when its
port is taken it must fail and still leave nothing running.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import unittest
from pathlib import Path
from typing import List

from tests.support import ROOT, require_tool

DEMO_TIMEOUT = 30  # make demo takes about 1 s


def copy_project(testcase: unittest.TestCase) -> Path:
    """Makefile, bootstrap.sh and the Python sources in a temporary directory (never the repo)."""
    tmp = tempfile.TemporaryDirectory(prefix="mtls-demo-")
    testcase.addCleanup(tmp.cleanup)
    project = Path(tmp.name).resolve()
    for name in ("Makefile", "bootstrap.sh"):
        shutil.copy2(ROOT / name, project / name)
    for part in ("server", "client"):
        (project / part).mkdir()
        for source in (ROOT / part).glob("*.py"):
            shutil.copy2(source, project / part / source.name)
    return project


def make(testcase: unittest.TestCase, project: Path, *args: str) -> subprocess.CompletedProcess:
    """Run make in project in its own process group; on timeout kill the whole group and fail."""
    exe = require_tool(testcase, "make")
    proc = subprocess.Popen([exe, "--no-print-directory", *args], cwd=project,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=DEMO_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        testcase.fail(f"make {' '.join(args)} did not finish in {DEMO_TIMEOUT}s:\n{out}\n{err}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def free_port() -> int:
    """A loopback port nothing listens on (bound, noted, closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def servers_running_from(project: Path) -> List[str]:
    """Command lines of live webserver.py processes started from (or naming) project."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "webserver.py" not in cmdline:
                continue
            cwd = os.readlink(entry / "cwd")
        except OSError:  # the process exited while we looked, or is not ours to inspect
            continue
        if str(project) in cmdline or cwd == str(project) or cwd.startswith(f"{project}/"):
            found.append(f"pid {entry.name}: {cmdline}")
    return found


def port_is_free(port: int) -> bool:
    """True if a new server could listen on port (SO_REUSEADDR, as http.server sets it: the
    demo's closed connections linger in TIME_WAIT, which only a listener should count against)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


class Help(unittest.TestCase):

    def test_make_without_target_lists_every_target(self):
        project = copy_project(self)
        result = make(self, project)
        self.assertEqual(result.returncode, 0, result.stderr)
        listed = [line.split()[1] for line in result.stdout.splitlines() if line.strip().startswith("make ")]
        documented = re.findall(r"^([a-z-]+):.*## ", (project / "Makefile").read_text(), re.M)
        self.assertEqual(listed, documented)  # every documented target, in file order
        for required in ("help", "certs", "serve", "client", "curl", "demo", "test", "clean"):
            self.assertIn(required, listed)

    def test_make_without_target_creates_nothing(self):
        project = copy_project(self)
        make(self, project)
        self.assertEqual(list(project.rglob("*.pem")), [])


class Demo(unittest.TestCase):

    def setUp(self):
        require_tool(self, "curl")
        require_tool(self, "openssl")
        self.project = copy_project(self)
        self.port = free_port()
        self.addCleanup(self.assertNothingLeftRunning)

    def assertNothingLeftRunning(self) -> None:
        self.assertEqual(servers_running_from(self.project), [])

    def test_demo_says_hello_world_from_python_client_and_curl(self):
        result = make(self, self.project, "demo", f"PORT={self.port}")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(result.stdout.count("Hello world!"), 2, result.stdout)
        self.assertNotIn("Traceback", result.stdout + result.stderr)

    def test_demo_shows_the_server_refusing_a_client_without_certificate(self):
        result = make(self, self.project, "demo", f"PORT={self.port}")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("handshake failed: no client certificate", result.stdout)

    def test_demo_stops_its_server(self):
        result = make(self, self.project, "demo", f"PORT={self.port}")
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertEqual(servers_running_from(self.project), [])
        self.assertTrue(port_is_free(self.port), f"port {self.port} still taken after make demo")

    def test_demo_fails_when_its_port_is_taken(self):
        with socket.socket() as squatter:
            squatter.bind(("127.0.0.1", self.port))
            squatter.listen()
            result = make(self, self.project, "demo", f"PORT={self.port}")
            self.assertNotEqual(result.returncode, 0, result.stdout)
            self.assertIn(f"cannot listen on 127.0.0.1:{self.port}", result.stdout + result.stderr)
            self.assertNotIn("Hello world!", result.stdout)
            self.assertEqual(servers_running_from(self.project), [])
        self.assertNotIn("Traceback", result.stdout + result.stderr)


if __name__ == "__main__":
    unittest.main()
