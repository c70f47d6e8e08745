"""What the bench measures: temporary identities, our server and openssl s_server, and their /proc figures."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parent.parent
BOOTSTRAP = ROOT / "bootstrap.sh"
WEBSERVER = ROOT / "server" / "webserver.py"
BANNER = re.compile(r"serving https://\S+?:(\d+)/ \(pid (\d+)\)")
S_SERVER_ACCEPT = re.compile(r"ACCEPT 127\.0\.0\.1:(\d+)")
# TLS 1.2 suites our server allows (webserver.server_context); s_server and the load clients use them too.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BenchError(Exception):
    """Something the bench needs is missing or broke; the message names it."""


class Identities:
    """One bootstrap.sh run in a temporary directory: the files each side needs."""

    def __init__(self, project: Path, key_type: str):
        self.project = project
        self.key_type = key_type
        self.server_cert = project / "server" / "server-cert.pem"
        self.server_key = project / "server" / "server-key.pem"
        self.trusted = project / "server" / "client-cert.pem"
        self.cacert = project / "client" / "server-cert.pem"
        self.client_cert = project / "client" / "client-cert.pem"
        self.client_key = project / "client" / "client-key.pem"


def make_identities(workdir: Path, key_type: str) -> Identities:
    """Copy bootstrap.sh into workdir/<key_type>/ and run it there, as a user would."""
    project = workdir / key_type
    project.mkdir()
    shutil.copy2(BOOTSTRAP, project / "bootstrap.sh")
    result = subprocess.run(["bash", "bootstrap.sh", "--key-type", key_type], cwd=project,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise BenchError(f"bootstrap.sh --key-type {key_type} failed:\n{result.stderr.strip()}")
    return Identities(project, key_type)


def make_trusted_bundle(workdir: Path, ids: Identities, total: int) -> Path:
    """A PEM bundle of `total` trusted client certificates: ids' own plus total-1 strangers.

    The strangers share one throwaway EC key (only their number matters to the server) and use
    bootstrap.sh's client profile with distinct subjects; openssl runs in parallel, one per core.
    """
    extra = workdir / f"extra-{total}"
    extra.mkdir()
    key, config = extra / "key.pem", extra / "client.cnf"
    run_openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    config.write_text("[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = ext\n"
                      "[dn]\nCN = stranger\n"
                      "[ext]\nbasicConstraints = critical,CA:FALSE\n"
                      "keyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n"
                      "subjectKeyIdentifier = hash\n")

    def mint(number: int) -> Path:
        out = extra / f"stranger-{number:04d}.pem"
        run_openssl("req", "-x509", "-new", "-key", str(key), "-config", str(config), "-sha256",
                    "-subj", f"/CN=stranger-{number:04d}", "-set_serial", str(number + 1),
                    "-days", "30", "-out", str(out))
        return out

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        strangers = list(pool.map(mint, range(1, total)))
    bundle = workdir / f"trusted-{total}.pem"
    # The real client last: any linear scan of the trusted set pays for every stranger first.
    bundle.write_text("".join(p.read_text() for p in strangers) + ids.trusted.read_text())
    return bundle


def run_openssl(*args: str) -> None:
    result = subprocess.run(["openssl", *args], stdin=subprocess.DEVNULL, capture_output=True,
                            text=True, timeout=60)
    if result.returncode != 0:
        raise BenchError(f"openssl {' '.join(args)} failed:\n{result.stderr.strip()}")


def describe_source(webserver: Path) -> str:
    """Which server code is measured: its path and, inside a git checkout, the commit (+ dirty)."""
    folder = webserver.resolve().parent

    def git(*args: str) -> str:
        try:
            result = subprocess.run(["git", "-C", str(folder), *args], capture_output=True,
                                    text=True, timeout=10, stdin=subprocess.DEVNULL)
        except OSError:
            return ""
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return str(webserver)
    dirty = " with uncommitted changes" if git("status", "--porcelain", "--", ".") else ""
    return f"{webserver} (git {commit}{dirty})"


def openssl_version() -> str:
    try:
        return subprocess.run(["openssl", "version"], capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except OSError:
        return "none"


class ProcStats:
    """Kernel accounting for one process: CPU of all its threads (living and exited) and RSS."""

    def __init__(self, pid: int):
        self.pid = pid
        self.available = Path(f"/proc/{pid}/stat").exists()

    def cpu_seconds(self) -> Optional[float]:
        """utime + stime from /proc/<pid>/stat (clock ticks, usually 10 ms), or None without /proc."""
        try:
            text = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = text[text.rindex(")") + 2:].split()  # comm may hold spaces; fields start at #3
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields #14 utime and #15 stime

    def rss_kb(self) -> Optional[int]:
        """VmRSS from /proc/<pid>/status, or None without /proc."""
        return self._status("VmRSS")

    def threads(self) -> Optional[int]:
        """Threads from /proc/<pid>/status, or None without /proc."""
        return self._status("Threads")

    def _status(self, field: str) -> Optional[int]:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        except OSError:
            pass
        return None

    def settled_cpu(self, quiet: float = 0.05, limit: float = 3.0) -> Optional[float]:
        """CPU seconds once a `quiet` interval passes without any more being spent (bounded)."""
        last = self.cpu_seconds()
        deadline = time.monotonic() + limit
        while last is not None and time.monotonic() < deadline:
            time.sleep(quiet)
            now = self.cpu_seconds()
            if now == last:
                break
            last = now
        return last


class Target:
    """A TLS server subprocess on 127.0.0.1, its port, and its /proc figures; stop() always kills it."""

    name = "?"

    def __init__(self, cmd: List[str], log: Path, banner: "re.Pattern[str]", cwd: Path,
                 ready_timeout: float = 20.0):
        self.cmd = cmd
        self.log = log
        self._log_file = open(log, "w")
        try:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                         stderr=subprocess.STDOUT, cwd=cwd)
        except OSError:
            self._log_file.close()
            raise
        try:
            self.port = self._wait_for(banner, ready_timeout)
        except BaseException:
            self.stop()
            raise
        self.stats = ProcStats(self.proc.pid)

    def _wait_for(self, banner: "re.Pattern[str]", timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = banner.search(self.log.read_text(errors="replace"))
            if match:
                return int(match.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise BenchError(f"{self.name} did not start: {' '.join(self.cmd)}\n"
                         + self.log.read_text(errors="replace")[-2000:])

    def stop(self) -> None:
        """SIGTERM, a bounded wait, then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_file.close()


class OurServer(Target):
    """server/webserver.py (or another tree's, for before/after) as a user runs it, on port 0."""

    name = "server/webserver.py"

    def __init__(self, ids: Identities, trusted: Path, log: Path, webserver: Path = WEBSERVER):
        super().__init__([sys.executable, str(webserver), "--port", "0",
                          "--tls-cert", str(ids.server_cert), "--tls-key", str(ids.server_key),
                          "--tls-client-certs", str(trusted)], log, BANNER, ROOT)
        banner_pid = int(BANNER.search(self.log.read_text(errors="replace")).group(2))
        if banner_pid != self.proc.pid:
            self.stop()
            raise BenchError(f"server banner names pid {banner_pid}, but we started {self.proc.pid}")


class ReferenceServer(Target):
    """The C reference: openssl s_server -www, requiring and verifying the same client certificates.

    -no_ca_names: our server sends no list of acceptable CAs either (so 1,000 trusted certificates
    do not become 1,000 names in every CertificateRequest); -verify_return_error: refuse, as ours does.
    """

    name = "openssl s_server"

    def __init__(self, ids: Identities, trusted: Path, log: Path):
        super().__init__(["openssl", "s_server", "-accept", "127.0.0.1:0", "-www",
                          "-cert", str(ids.server_cert), "-key", str(ids.server_key),
                          "-CAfile", str(trusted), "-Verify", "1", "-verify_return_error",
                          "-no_ca_names", "-cipher", TLS12_CIPHERS], log, S_SERVER_ACCEPT, log.parent)
