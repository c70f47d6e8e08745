"""The server against a hostile network: unusable certificates, slow peers, floods, garbage, leaks.

Every peer talks to 127.0.0.1 only; every loop is bounded in count and in time. The resource tests
print what they measured (RSS, threads, fds, durations) to stderr and put it in their failure
messages, so a regression says how far off it is.
"""

import collections
import concurrent.futures
import random
import re
import selectors
import socket
import signal
import ssl
import stat
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path
from typing import Callable, Iterable, List, Optional

from tests import pki
from tests.harness import (ROOT, WEBSERVER, ServerProcess, curl, make_identities, process_stats,
                           require_proc, require_tool, settled_stats, start_server)

sys.path.insert(0, str(ROOT / "server"))  # the server's modules import each other as top-level names
from hardening import insecure_key_mode  # noqa: E402

SEED = 20261204
PEER = re.compile(r"127\.0\.0\.1:(\d+)\b")
# What the server logs when a certificate verifies (OpenSSL builds a chain to a trusted CA) but is
# not itself in the trusted set: the SHA-256 pin refuses it. Wording from server/engine.py.
PIN_REFUSAL = r"refused: certificate [0-9a-f]+\b.* is not in the trusted set"


def tls_versions(test: unittest.TestCase):
    """curl flags that pin each TLS version, as (label, flags) for subTest loops."""
    require_tool(test, "curl")
    return [(version, ("--tlsv" + version, "--tls-max", version)) for version in ("1.2", "1.3")]


def in_parallel(items: Iterable, work: Callable, workers: int, budget: float) -> List:
    """work(item) for each item on `workers` threads; items not started within `budget` seconds
    are skipped (their result is None), so a stalled server cannot make the test hang."""
    deadline = time.monotonic() + budget

    def bounded(item):
        return work(item) if time.monotonic() < deadline else None

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(bounded, items))


def peer_lines(log: List[str]) -> collections.Counter:
    """How many log lines name each client port."""
    counts = collections.Counter()
    for line in log:
        match = PEER.search(line)
        if match:
            counts[int(match.group(1))] += 1
    return counts


def assert_one_line_per_connection(test: unittest.TestCase, log: List[str],
                                   connections: collections.Counter) -> None:
    """Every line names a peer (no multi-line dump, no traceback) and no peer port has more lines
    than connections came from it (a port can be reused, so it may have carried several)."""
    test.assertFalse([line for line in log if "Traceback" in line], "".join(log))
    unnamed = [line for line in log if not PEER.search(line)]
    test.assertEqual(unnamed, [], "log lines that name no peer (a multi-line dump?)")
    chatty = {port: n for port, n in peer_lines(log).items() if n > connections[port]}
    test.assertEqual(chatty, {}, "ports with more log lines than connections")


def client_context(ids) -> ssl.SSLContext:
    """A verifying TLS client with the test client identity (never CERT_NONE)."""
    context = ssl.create_default_context(cafile=str(ids.cacert))
    context.load_cert_chain(ids.client_cert, ids.client_key)
    return context


def fetch_hello(context: ssl.SSLContext, port: int, timeout: float = 10.0) -> bool:
    """One full mTLS connection: handshake, GET / with Connection: close, read to the server's
    close_notify, answer it, close. True if the answer was Hello world!."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = b""
            while len(answer) < 65536:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                answer += chunk
            try:
                tls.unwrap()  # our close_notify, so the server's unwrap() returns at once
            except (OSError, ValueError):
                pass
    return answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"Hello world!")


class InsecureKeyModeIsDetected(unittest.TestCase):
    """hardening.insecure_key_mode: None for an owner-only key, else one line naming the chmod."""

    def key_with_mode(self, mode: int) -> Path:
        tmp = tempfile.TemporaryDirectory(prefix="mtls-key-")
        self.addCleanup(tmp.cleanup)
        key = Path(tmp.name) / "server-key.pem"
        key.write_text("not really a key\n")
        key.chmod(mode)
        return key

    def test_owner_only_modes_pass(self):
        for mode in (0o600, 0o400, 0o700):
            with self.subTest(mode=oct(mode)):
                self.assertIsNone(insecure_key_mode(self.key_with_mode(mode)))

    def test_world_readable_key_is_refused_with_the_chmod_that_fixes_it(self):
        key = self.key_with_mode(0o644)
        message = insecure_key_mode(key)
        # webserver.py prefixes it with "webserver: error: " and exits 2.
        self.assertEqual(message, f"{key} is readable by group and others (mode 0644); "
                                  f"fix: chmod 600 {key}")

    def test_any_group_or_other_permission_is_refused(self):
        expected = {0o640: "readable by group", 0o604: "readable by others",
                    0o620: "writable by group", 0o660: "readable and writable by group",
                    0o601: "executable by others",
                    0o751: "readable and executable by group, executable by others"}
        for mode, words in expected.items():
            with self.subTest(mode=oct(mode)):
                message = insecure_key_mode(self.key_with_mode(mode))
                self.assertIsNotNone(message)
                self.assertIn(f" is {words} (mode {mode:04o}); fix: chmod 600 ", message)
                self.assertNotIn("\n", message)

    def test_fix_is_quoted_for_the_shell(self):
        key = self.key_with_mode(0o644).rename(self.key_with_mode(0o600).parent / "my key.pem")
        self.assertTrue(insecure_key_mode(key).endswith(f"fix: chmod 600 '{key}'"))

    def test_missing_key_is_left_to_the_loader(self):
        self.assertIsNone(insecure_key_mode(Path(tempfile.gettempdir()) / "no-such-key.pem"))

    def test_mode_is_read_through_a_symlink(self):
        key = self.key_with_mode(0o644)
        link = key.with_name("link.pem")
        link.symlink_to(key)
        self.assertIn("(mode 0644)", insecure_key_mode(link))
        key.chmod(stat.S_IRUSR | stat.S_IWUSR)
        self.assertIsNone(insecure_key_mode(link))


class RefusesTrustedButUnusableCertificates(unittest.TestCase):
    """Certificates in the trusted set that must still be refused, under TLS 1.2 and TLS 1.3, each
    with one log line naming the peer and the reason; a good certificate of the same bundle works."""

    @classmethod
    def setUpClass(cls):
        cls.ids = make_identities(cls)
        work = cls.ids.project / "pki"
        work.mkdir()
        cls.good = pki.good_client(work)
        cls.expired = pki.expired_client(work)
        cls.future = pki.not_yet_valid_client(work)
        cls.server_purpose = pki.wrong_purpose_client(work)
        cls.ca = pki.certificate_authority(work)
        cls.ca_signed = pki.ca_signed_client(work, cls.ca)
        bundle = work / "trusted-bundle.pem"
        bundle.write_text("".join(identity.cert.read_text() for identity in
                                  (cls.good, cls.expired, cls.future, cls.server_purpose, cls.ca)))
        cls.server = start_server(cls, cls.ids, "--tls-client-certs", str(bundle))

    def present(self, identity: pki.Identity, flags) -> tuple:
        """curl presenting `identity`: (result, curl's local port, index of the first log line
        written after curl started), so its log lines are found without mistaking a reused port."""
        since = len(self.server.log)
        result = curl(self, self.ids, self.server.port, *flags, "--cert", str(identity.cert),
                      "--key", str(identity.key), "--write-out",
                      "%{stderr}local port %{local_port}\n", with_cert=False)
        match = re.search(r"local port (\d+)", result.stderr)
        self.assertIsNotNone(match, result.stderr)
        return result, int(match.group(1)), since

    def lines_about(self, port: int, since: int, pattern: str, timeout: float = 5.0) -> List[str]:
        """The log lines since `since` naming 127.0.0.1:port, once one of them matches pattern."""
        deadline = time.monotonic() + timeout
        while True:
            about = [line for line in self.server.log[since:] if f"127.0.0.1:{port} " in line]
            if any(re.search(pattern, line) for line in about) or time.monotonic() > deadline:
                return about
            time.sleep(0.05)

    def assert_refused(self, identity: pki.Identity, reason: str) -> None:
        for version, flags in tls_versions(self):
            with self.subTest(tls=version):
                result, port, since = self.present(identity, flags)
                self.assertNotEqual(result.returncode, 0, result.stdout)
                self.assertNotIn("Hello world!", result.stdout)
                self.assertNotIn("reset", result.stderr.lower())
                self.lines_about(port, since, reason)
                time.sleep(0.2)  # a second line, if the server wrote one, would follow at once
                about = self.lines_about(port, since, reason, timeout=0)
                self.assertEqual(len(about), 1, f"expected one line with {reason!r}: {about}")
                self.assertRegex(about[0], reason)

    def test_expired_certificate_is_refused(self):
        self.assert_refused(self.expired, "certificate has expired")

    def test_not_yet_valid_certificate_is_refused(self):
        self.assert_refused(self.future, "certificate is not yet valid")

    def test_server_purpose_certificate_is_refused(self):
        # OpenSSL's words for a certificate whose extendedKeyUsage lacks clientAuth.
        self.assert_refused(self.server_purpose, "unsuitable certificate purpose")

    def test_certificate_signed_by_a_trusted_ca_is_refused_by_the_pin(self):
        # OpenSSL accepts this chain (the CA is in the trusted set); only the SHA-256 pin refuses it.
        self.assert_refused(self.ca_signed, PIN_REFUSAL)

    def test_good_certificate_of_the_same_bundle_is_served(self):
        for version, flags in tls_versions(self):
            with self.subTest(tls=version):
                result, port, since = self.present(self.good, flags)
                self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"),
                                 result.stderr)
                served = 'CN=good "GET / HTTP/1.1" 200'
                about = self.lines_about(port, since, served)
                self.assertEqual(len(about), 1, about)
                self.assertIn(served, about[0])


class SlowlorisPeers(unittest.TestCase):
    """200 TCP connections that never send a byte: a real client is still served at once, and the
    server closes all 200 after --handshake-timeout."""

    SILENT = 200
    HANDSHAKE_TIMEOUT = 2.0
    CLOSE_MARGIN = 3.0  # scheduling slack on a loaded 2-core machine, on top of the timeout

    @classmethod
    def setUpClass(cls):
        cls.ids = make_identities(cls)
        cls.server = start_server(cls, cls.ids, "--handshake-timeout", str(cls.HANDSHAKE_TIMEOUT))

    def open_silent(self) -> List[socket.socket]:
        silent = []
        self.addCleanup(lambda: [sock.close() for sock in silent])
        for _ in range(self.SILENT):
            silent.append(socket.create_connection(("127.0.0.1", self.server.port), timeout=5))
        return silent

    def test_real_client_is_served_while_200_silent_connections_are_open(self):
        self.open_silent()
        started = time.monotonic()
        # curl's limit is below the handshake timeout: it can pass only while the silent ones hold.
        result = curl(self, self.ids, self.server.port, "--max-time", "1.5")
        elapsed = time.monotonic() - started
        self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"),
                         f"{result.stderr} after {elapsed:.2f}s")

    def test_200_silent_connections_are_closed_by_the_handshake_timeout(self):
        silent = self.open_silent()
        connected = time.monotonic()
        deadline = connected + self.HANDSHAKE_TIMEOUT + self.CLOSE_MARGIN
        closed_after = []
        with selectors.DefaultSelector() as selector:
            for sock in silent:
                sock.setblocking(False)
                selector.register(sock, selectors.EVENT_READ)
            while selector.get_map() and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    try:
                        data = key.fileobj.recv(4096)
                    except BlockingIOError:
                        continue
                    except ConnectionResetError:
                        data = b""
                    if not data:  # EOF or reset: the server closed it
                        closed_after.append(time.monotonic() - connected)
                        selector.unregister(key.fileobj)
            still_open = len(selector.get_map())
        self.assertEqual(still_open, 0, f"{still_open} of {self.SILENT} silent connections still "
                         f"open {self.HANDSHAKE_TIMEOUT + self.CLOSE_MARGIN:.0f}s after connecting")
        print(f"\n  slowloris: {self.SILENT} closed between {min(closed_after):.2f}s and "
              f"{max(closed_after):.2f}s", file=sys.stderr)


class FloodOfConnectionAttempts(unittest.TestCase):
    """500 connection attempts from 10 threads, half sending a ClientHello-like fragment and
    hanging up, half hanging up at once: the server stays up, quiet, and serves afterwards."""

    ATTEMPTS = 500

    @classmethod
    def setUpClass(cls):
        cls.ids = make_identities(cls)
        cls.server = start_server(cls, cls.ids, "--handshake-timeout", "2")

    def attempt(self, number: int) -> Optional[int]:
        """One hit-and-run connection; returns its local port, or None if it could not connect."""
        rng = random.Random(SEED + number)
        try:
            with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as sock:
                port = sock.getsockname()[1]
                if number % 2:
                    body = rng.randbytes(rng.randrange(0, 200))
                    sock.sendall(b"\x16\x03\x01" + (len(body) + 4).to_bytes(2, "big")
                                 + b"\x01\x00" + body)
                return port
        except OSError:
            return None

    def test_server_survives_500_hit_and_run_connections(self):
        first_line = len(self.server.log)
        started = time.monotonic()
        ports = in_parallel(range(self.ATTEMPTS), self.attempt, workers=10, budget=30)
        elapsed = time.monotonic() - started
        connected = [port for port in ports if port is not None]
        self.assertEqual(len(connected), self.ATTEMPTS, f"only {len(connected)} connected")
        self.assertIsNone(self.server.proc.poll(), "the server died:\n" + self.server.output())
        result = curl(self, self.ids, self.server.port, "--max-time", "5")
        self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)
        flood_log = [line for line in self.server.log[first_line:] if 'CN=client "GET' not in line]
        assert_one_line_per_connection(self, flood_log, collections.Counter(connected))
        print(f"\n  flood: {self.ATTEMPTS} attempts in {elapsed:.2f}s, "
              f"{len(flood_log)} log lines", file=sys.stderr)


def captured_client_hellos() -> List[bytes]:
    """Real ClientHello records from Python's own TLS client (TLS 1.3 and 1.2-only), captured
    through memory BIOs: no network needed."""
    hellos = []
    for maximum in (ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2):
        context = ssl.create_default_context()
        context.maximum_version = maximum
        outgoing = ssl.MemoryBIO()
        tls = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
        try:
            tls.do_handshake()
        except ssl.SSLWantReadError:
            pass  # the hello is written; the handshake now waits for a server that never comes
        hellos.append(outgoing.read())
    return hellos


def mutate(rng, hello: bytes) -> bytes:
    """One seeded mutation of a ClientHello record: truncated, bit-flipped, lying lengths,
    spliced, wrong record or handshake type, or plain random bytes."""
    kind = rng.randrange(10)
    data = bytearray(hello)
    if kind == 0:  # truncated anywhere, including inside the 5-byte record header
        return bytes(data[:rng.randrange(len(data))])
    if kind == 1:  # a few flipped bits
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 2:  # record length lies (short, long, or 64 kB)
        data[3:5] = rng.choice([0, 1, rng.randrange(0x10000), 0xFFFF]).to_bytes(2, "big")
        return bytes(data)
    if kind == 3:  # handshake message length lies
        data[6:9] = rng.randrange(1 << 24).to_bytes(3, "big")
        return bytes(data)
    if kind == 4:  # random bytes spliced into the hello
        start = rng.randrange(len(data))
        end = min(len(data), start + rng.randrange(64))
        return bytes(data[:start]) + rng.randbytes(rng.randrange(64)) + bytes(data[end:])
    if kind == 5:  # another record or handshake type with the hello's body
        if rng.random() < 0.5:
            data[0] = rng.choice([20, 21, 23, 24, rng.randrange(256)])
        else:
            data[5] = rng.randrange(256)
        return bytes(data)
    if kind == 6:  # a well-framed record of random content
        body = rng.randbytes(rng.randrange(600))
        return bytes([rng.choice([20, 21, 22, 23]), 3, rng.randrange(5)]) + \
            len(body).to_bytes(2, "big") + body
    if kind == 7:  # the hello followed by garbage records
        return bytes(data) + rng.randbytes(rng.randrange(1, 300))
    if kind == 8:  # pure noise
        return rng.randbytes(rng.randrange(1, 600))
    return bytes(data)  # an intact hello, then the client hangs up mid-handshake


class FuzzedHandshakes(unittest.TestCase):
    """2,000 seeded mutations of real ClientHellos, each on its own connection: the server stays up,
    logs at most one line per connection, answers a real client, and its memory stays bounded."""

    CASES = 2000
    WARM_UP = 200
    WORKERS = 8

    @classmethod
    def setUpClass(cls):
        require_proc()
        cls.ids = make_identities(cls)
        cls.server = start_server(cls, cls.ids, "--handshake-timeout", "2")

    def poke(self, payload: bytes) -> tuple:
        """Send one payload, half-close, and read until the server closes; (local port, outcome)."""
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=5) as sock:
            port = sock.getsockname()[1]
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                for _ in range(64):  # the server's answer is at most an alert or a short 400
                    if not sock.recv(4096):
                        return port, "closed"
                return port, "chatty"
            except socket.timeout:
                return port, "hung"
            except OSError:
                return port, "reset"

    def test_server_survives_2000_fuzzed_hellos_with_bounded_memory(self):
        rng = random.Random(SEED)
        hellos = captured_client_hellos()
        payloads = [mutate(rng, rng.choice(hellos)) for _ in range(self.CASES)]
        pid = self.server.proc.pid
        first_line = len(self.server.log)
        started = time.monotonic()
        outcomes = in_parallel(payloads[:self.WARM_UP], self.poke, self.WORKERS, budget=20)
        warm = settled_stats(pid)
        outcomes += in_parallel(payloads[self.WARM_UP:], self.poke, self.WORKERS, budget=50)
        elapsed = time.monotonic() - started
        after = settled_stats(pid)
        done = [outcome for outcome in outcomes if outcome is not None]
        self.assertEqual(len(done), self.CASES, f"only {len(done)} cases ran in the time budget")
        kinds = collections.Counter(outcome for _, outcome in done)
        self.assertEqual(kinds["hung"] + kinds["chatty"], 0, f"connections left open: {kinds}")
        self.assertIsNone(self.server.proc.poll(), "the server died:\n" + self.server.output())
        result = curl(self, self.ids, self.server.port, "--max-time", "5")
        self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)
        fuzz_log = [line for line in self.server.log[first_line:] if 'CN=client "GET' not in line]
        assert_one_line_per_connection(self, fuzz_log, collections.Counter(p for p, _ in done))
        limit = 2 * warm["rss_kb"] + 4096
        self.assertLess(after["rss_kb"], limit, f"RSS grew: warm {warm}, after {after}")
        print(f"\n  fuzz: {self.CASES} cases in {elapsed:.1f}s {dict(kinds)}; "
              f"warm {warm}, after {after}", file=sys.stderr)


class NoLeaksAcrossHandshakes(unittest.TestCase):
    """2,000 full mTLS connections: memory, threads and file descriptors return to their level
    after the first 200."""

    TOTAL = 2000
    WARM_UP = 200
    WORKERS = 8

    @classmethod
    def setUpClass(cls):
        require_proc()
        cls.ids = make_identities(cls)
        cls.server = start_server(cls, cls.ids)

    def settle_to(self, pid: int, baseline: dict, timeout: float = 5.0) -> dict:
        """Poll until threads and fds are back to the baseline (threads +2 allowed), or timeout."""
        deadline = time.monotonic() + timeout
        while True:
            now = process_stats(pid)
            if now["threads"] <= baseline["threads"] + 2 and now["fds"] <= baseline["fds"]:
                return now
            if time.monotonic() > deadline:
                return now
            time.sleep(0.1)

    def test_2000_handshakes_leak_no_memory_threads_or_descriptors(self):
        context = client_context(self.ids)
        pid = self.server.proc.pid
        started = time.monotonic()
        served = in_parallel(range(self.WARM_UP), lambda _: fetch_hello(context, self.server.port),
                             self.WORKERS, budget=30)
        warm = settled_stats(pid)
        served += in_parallel(range(self.TOTAL - self.WARM_UP),
                              lambda _: fetch_hello(context, self.server.port),
                              self.WORKERS, budget=60)
        elapsed = time.monotonic() - started
        after = self.settle_to(pid, warm)
        self.assertEqual(served.count(True), self.TOTAL, f"served {served.count(True)} in budget")
        self.assertLessEqual(after["threads"], warm["threads"] + 2, f"warm {warm}, after {after}")
        self.assertLessEqual(after["fds"], warm["fds"], f"warm {warm}, after {after}")
        rss_limit = max(warm["rss_kb"] * 1.2, warm["rss_kb"] + 4096)
        self.assertLessEqual(after["rss_kb"], rss_limit, f"warm {warm}, after {after}")
        self.assertNotIn("Traceback", self.server.output())
        print(f"\n  leak: {self.TOTAL} handshakes in {elapsed:.1f}s; warm {warm}, after {after}",
              file=sys.stderr)


def read_response(tls: socket.socket, timeout: float) -> bytes:
    """Read until a complete Hello world! response, the server's close, or the deadline."""
    deadline = time.monotonic() + timeout
    answer = b""
    while not answer.endswith(b"Hello world!") and time.monotonic() < deadline:
        tls.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = tls.recv(4096)
        except socket.timeout:
            break
        if not chunk:
            break
        answer += chunk
    return answer


def wait_exit(server: ServerProcess, timeout: float) -> tuple:
    """(exit code, or None if still running; seconds waited)."""
    started = time.monotonic()
    try:
        code = server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    return code, time.monotonic() - started


class RefusesAKeyOthersCanRead(unittest.TestCase):
    """Like ssh, the server will not use a private key that group or others can read."""

    def test_refuses_to_start_with_a_key_readable_by_others(self):
        ids = make_identities(self)
        ids.server_key.chmod(0o644)
        proc = subprocess.Popen([sys.executable, "-W", "error", str(WEBSERVER), "--port", "0",
                                 *ids.server_args()], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=5)
            self.fail(f"the server started with a mode 0644 key:\n{out}{err}")
        self.assertEqual(proc.returncode, 2, err)
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        self.assertIn(str(ids.server_key), err)
        self.assertIn("chmod 600", err)

    def test_starts_with_a_key_only_the_owner_can_read(self):
        ids = make_identities(self)
        ids.server_key.chmod(0o600)
        server = start_server(self, ids)
        result = curl(self, ids, server.port)
        self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)


class DrainsOnSigterm(unittest.TestCase):
    """SIGTERM lets a request in flight finish, then exits 0; idle connections do not hold it up."""

    def keep_alive_connection(self, ids, server: ServerProcess):
        """An mTLS socket already served one keep-alive request: past the handshake, idle in HTTP
        (so a partial request sent next is known to reach the HTTP stage, not the handshake)."""
        raw = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        self.addCleanup(raw.close)  # in case the handshake fails; harmless once wrapped
        tls = client_context(ids).wrap_socket(raw, server_hostname="localhost")
        self.addCleanup(tls.close)
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = read_response(tls, timeout=5)
        self.assertTrue(answer.endswith(b"Hello world!"), answer)
        return tls

    def test_sigterm_lets_a_request_in_flight_finish(self):
        ids = make_identities(self)
        server = ServerProcess(ids.server_args())
        self.addCleanup(server.kill)
        tls = self.keep_alive_connection(ids, server)
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n")  # the head is not finished
        time.sleep(0.3)  # let the server read what was sent
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        self.assertIsNone(server.proc.poll(), "exited with a request in flight:\n" + server.output())
        tls.sendall(b"\r\n")
        answer = read_response(tls, timeout=5)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        self.assertTrue(answer.endswith(b"Hello world!"), answer)
        code, waited = wait_exit(server, 5)
        self.assertEqual(code, 0, f"after {waited:.1f}s:\n{server.output()}")
        self.assertNotIn("Traceback", server.output())

    def test_idle_keep_alive_connection_does_not_delay_exit(self):
        ids = make_identities(self)
        server = ServerProcess(ids.server_args())
        self.addCleanup(server.kill)
        self.keep_alive_connection(ids, server)  # open, served, nothing in flight
        server.proc.send_signal(signal.SIGTERM)
        code, waited = wait_exit(server, 3)
        self.assertEqual(code, 0, f"still running {waited:.1f}s after SIGTERM:\n{server.output()}")
        self.assertNotIn("Traceback", server.output())


class BoundsConnections(unittest.TestCase):
    """--max-connections: 60 silent peers against a limit of 20 hold at most 20 server sockets and
    no more threads, and a real client is served once they are gone."""

    def test_max_connections_bounds_sockets_and_threads(self):
        require_proc()
        ids = make_identities(self)
        server = start_server(self, ids, "--max-connections", "20", "--handshake-timeout", "3")
        idle = settled_stats(server.proc.pid)
        silent = []
        try:
            for _ in range(60):
                silent.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            samples = []
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                samples.append(process_stats(server.proc.pid))
                time.sleep(0.05)
        finally:
            for sock in silent:
                sock.close()
        most_fds = max(sample["fds"] for sample in samples)
        most_threads = max(sample["threads"] for sample in samples)
        self.assertLessEqual(most_fds, idle["fds"] + 20, f"idle {idle}, peak fds {most_fds}")
        self.assertLess(most_threads, 60, f"idle {idle}, peak threads {most_threads}")
        result = curl(self, ids, server.port, "--max-time", "5")
        self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)
        print(f"\n  max-connections 20: idle {idle}, peak fds {most_fds}, "
              f"peak threads {most_threads}", file=sys.stderr)


class QueuesBurstsInTheBacklog(unittest.TestCase):
    """Issue 4: excess connections wait in the listen backlog, and a real client is served within a
    second. A backlog smaller than a burst makes Linux drop SYNs, and a dropped SYN is retried only
    after 1 s (then 3 s), so the backlog must hold a burst the size of --max-connections."""

    BURST = 500

    def test_a_burst_of_500_connects_is_queued_not_dropped(self):
        ids = make_identities(self)
        server = start_server(self, ids, "--handshake-timeout", "2")

        def connect_and_close(number: int) -> float:
            """Connect, then (every other time) send a ClientHello-like fragment; hang up."""
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
                waited = time.monotonic() - started
                if number % 2:
                    sock.sendall(b"\x16\x03\x01\x00\x10\x01\x00\x00\x0c" + bytes(12))
                return waited

        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            waits = list(pool.map(connect_and_close, range(self.BURST)))
        retried = sorted(wait for wait in waits if wait > 0.5)  # a SYN retry takes >= 1 s
        self.assertEqual(retried, [], f"{len(retried)} of {self.BURST} connects waited for a SYN "
                                      "retry: the listen backlog overflowed")
        result = curl(self, ids, server.port, "--max-time", "5")
        self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)


if __name__ == "__main__":
    unittest.main()
