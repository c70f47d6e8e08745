"""A real browser signs in with the exported client bundle: headless Chromium against the server.

Run by `make test-browser`, not `make test`: it writes a Chromium policy file under /etc (so it
needs root) and wants the `chromium` and `libnss3-tools` Debian packages (.ci/run installs them).
The module name does not match `test_*.py` on purpose, so `unittest discover` leaves it alone.

On Linux, Chromium reads client certificates and extra trust from the NSS database in
$HOME/.pki/nssdb, so each test gets a throwaway HOME with its own database: the bundle from
`./bootstrap.sh export-p12` imported with pk12util, and the server's self-signed certificate
trusted as a peer with certutil (never a flag that turns certificate checks off). The managed
policy AutoSelectCertificateForUrls lets Chromium present the certificate without a dialog.
Chromium talks only to the server on localhost. The flags that turn off background networking
are not enough on their own (Chromium 156 still looks up clients2.google.com, update.googleapis.com
and accounts.google.com), so --host-resolver-rules resolves no name but localhost, and every run
writes a net log that the test reads to prove it: no DNS query, no UDP packet, and TCP connections
to loopback addresses only. The net log also shows the TLS alert the server refused Chromium with.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import unittest
from pathlib import Path
from typing import List, Tuple

from tests.harness import (make_identities, reload_server, run, run_bootstrap,
                           start_project_server)
from tests.support import IN_CI, require_tool

BROWSER_TIMEOUT = 60  # one Chromium run takes 1-2 s; without the policy it waits for a dialog forever
POLICY_DIR = Path("/etc/chromium/policies/managed")
P12_PASSWORD = "correct horse battery staple"
CLIENT = "alice"
# Headless, and nothing but the page: no GPU, no QUIC, no first-run, sync, update or background
# calls, and no name resolves except localhost (so nothing else can even be looked up).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost"]
# How headless Chromium reports a refused client certificate. Under TLS 1.3 the server refuses
# after the client's last handshake message; when that alert wins the race with Chromium writing
# its request, Chromium reports the dead socket instead (2 or 3 runs in 10 here; more with a net log).
REFUSED = re.compile(r"Page load failed: net::(ERR_BAD_SSL_CLIENT_AUTH_CERT|ERR_SOCKET_NOT_CONNECTED)")
# TLS alert descriptions (RFC 8446 6.2) the server refuses with, as Chromium's net log records them.
CERTIFICATE_REQUIRED = 116  # no client certificate at all (TLS 1.3)
UNKNOWN_CA = 48             # a certificate that is not in the trusted set
LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|\[::1\]):\d+$")
# Set MTLS_SCREENSHOT=/some/path.png to keep a copy of the screenshot (e.g. for the README).
KEEP_SCREENSHOT = os.environ.get("MTLS_SCREENSHOT")


def colon_fingerprint(cert: Path) -> str:
    """SHA-256 of a PEM certificate as 'AB:CD:...', the form the whoami page shows."""
    digest = hashlib.sha256(ssl.PEM_cert_to_DER_cert(cert.read_text())).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


class NetLog:
    """What Chromium's --log-net-log says one run did on the network."""

    def __init__(self, path: Path):
        log = json.loads(path.read_text())
        names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
        self.events = [(names[event["type"]], event.get("params", {})) for event in log["events"]]

    def of_type(self, name: str) -> List[dict]:
        return [params for kind, params in self.events if kind == name]

    def outside_traffic(self) -> List[str]:
        """Every DNS query, UDP packet and non-loopback TCP connection attempt, as readable lines."""
        found = [f"DNS query for {p.get('qname')}" for p in self.of_type("DNS_TRANSACTION_QUERY")]
        found += [f"UDP packet ({p.get('byte_count')} bytes)" for p in self.of_type("UDP_BYTES_SENT")]
        found += [f"TCP connect to {p['address']}" for p in self.of_type("TCP_CONNECT_ATTEMPT")
                  if "address" in p and not LOOPBACK.match(p["address"])]  # the end has no address
        return found

    def alerts_received(self) -> List[int]:
        """Descriptions of the TLS alerts the server sent (params: base64 of level, description)."""
        return [base64.b64decode(p["bytes"])[1] for p in self.of_type("SSL_ALERT_RECEIVED")]


def browser_noise_removed(stderr: str) -> str:
    """Chromium's stderr without the D-Bus complaints of a machine with no desktop session."""
    return "\n".join(line for line in stderr.splitlines()
                     if "dbus" not in line and "unexpected operator" not in line)


class ChromiumSignsIn(unittest.TestCase):
    """The bundle works in Chromium; without it, or once it is revoked, Chromium is refused."""

    def setUp(self):
        self.chromium = require_tool(self, "chromium")
        self.certutil = require_tool(self, "certutil")
        self.pk12util = require_tool(self, "pk12util")
        self.ids = make_identities(self)
        self.bootstrap("add-client", CLIENT)
        self.bootstrap("export-p12", CLIENT, env={"P12_PASSWORD": P12_PASSWORD})
        self.bundle = self.ids.project / "client" / f"{CLIENT}.p12"
        self.server = start_project_server(self, self.ids)
        self.url = f"https://localhost:{self.server.port}/whoami"
        home = tempfile.TemporaryDirectory(prefix="mtls-browser-home-")
        self.addCleanup(home.cleanup)
        self.home = Path(home.name)
        self.install_policy()

    def bootstrap(self, *args: str, **kwargs) -> None:
        result = run_bootstrap(self.ids.project, *args, **kwargs)
        self.assertEqual(result.returncode, 0, result.stderr)

    # -- the browser's world: policy, NSS database, one bounded run ---------------------------------

    def install_policy(self) -> None:
        """Auto-select the client certificate for this server only; removed after the test."""
        policy = POLICY_DIR / f"mtls-demo-test-{os.getpid()}.json"
        rule = json.dumps({"pattern": f"https://localhost:{self.server.port}", "filter": {}})
        self.addCleanup(policy.unlink, missing_ok=True)
        try:
            POLICY_DIR.mkdir(parents=True, exist_ok=True)
            policy.write_text(json.dumps({"AutoSelectCertificateForUrls": [rule]}) + "\n")
        except PermissionError:
            message = f"cannot write {policy}: make test-browser needs root (sudo make test-browser)"
            if IN_CI:
                self.fail(message)
            raise unittest.SkipTest(message)
        policy.chmod(0o644)

    def nss_db(self, with_bundle: bool) -> None:
        """$HOME/.pki/nssdb trusting the server certificate, holding the client bundle if asked."""
        db = self.home / ".pki" / "nssdb"
        db.mkdir(parents=True)
        steps = [[self.certutil, "-N", "-d", f"sql:{db}", "--empty-password"],
                 [self.certutil, "-A", "-d", f"sql:{db}", "-n", "mtls-demo-server", "-t", "P,,",
                  "-i", str(self.ids.cacert)]]
        if with_bundle:
            steps.append([self.pk12util, "-i", str(self.bundle), "-d", f"sql:{db}",
                          "-W", P12_PASSWORD])
        for step in steps:
            result = run(step)
            self.assertEqual(result.returncode, 0, f"{step}:\n{result.stdout}{result.stderr}")

    def browse(self, *args: str) -> Tuple[subprocess.CompletedProcess, NetLog]:
        """One headless Chromium run on the whoami URL in its own process group, bounded in time
        (whatever it leaves behind is killed with the group); fails if it went beyond loopback."""
        profile = Path(tempfile.mkdtemp(prefix="profile-", dir=self.home))
        netlog = profile / "netlog.json"
        env = dict(os.environ, HOME=str(self.home), XDG_CONFIG_HOME=str(self.home / ".config"),
                   XDG_CACHE_HOME=str(self.home / ".cache"))
        cmd: List[str] = [self.chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                          f"--log-net-log={netlog}", *args, self.url]
        with subprocess.Popen(cmd, env=env, cwd=self.home, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True) as proc:
            try:
                out, err = proc.communicate(timeout=BROWSER_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                self.fail(f"chromium did not finish within {BROWSER_TIMEOUT} s: {' '.join(cmd)}")
            finally:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)  # renderers or a zygote left behind
                except ProcessLookupError:
                    pass
        result = subprocess.CompletedProcess(cmd, proc.returncode, out, browser_noise_removed(err))
        self.assertTrue(netlog.is_file(), f"chromium wrote no net log:\n{result.stderr}")
        log = NetLog(netlog)
        self.assertEqual(log.outside_traffic(), [], "chromium went beyond loopback")
        return result, log

    def assert_signed_in(self, run: Tuple[subprocess.CompletedProcess, NetLog]) -> None:
        result, _ = run
        dom = result.stdout.replace("<wbr>", "")
        self.assertIn(f"<title>You are {CLIENT}</title>", dom, result.stderr)
        self.assertIn(colon_fingerprint(self.ids.project / "client" / CLIENT / "client-cert.pem"),
                      dom)
        self.server.wait_for_log(f'CN={CLIENT} "GET /whoami HTTP/1.1" 200')

    def assert_refused(self, run: Tuple[subprocess.CompletedProcess, NetLog], alert: int,
                       server_says: str) -> None:
        """The page did not load, Chromium got the server's alert, and the server logged why."""
        result, log = run
        self.assertRegex(result.stderr, REFUSED)
        self.assertNotIn(CLIENT, result.stdout)
        self.assertIn(alert, log.alerts_received())
        self.server.wait_for_log(f"handshake failed: {re.escape(server_says)}")

    # -- the behaviours ------------------------------------------------------------------------------

    def test_imported_bundle_signs_in_and_the_page_names_the_client(self):
        self.nss_db(with_bundle=True)
        self.assert_signed_in(self.browse("--dump-dom"))

    def test_screenshot_of_the_whoami_page(self):
        self.nss_db(with_bundle=True)
        shot = self.home / "whoami.png"
        result, _ = self.browse(f"--screenshot={shot}", "--window-size=900,600")
        self.assertTrue(shot.is_file(), result.stderr)
        png = shot.read_bytes()
        self.assertEqual(png[:8], b"\x89PNG\r\n\x1a\n")
        self.assertEqual((int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")),
                         (900, 600))
        self.assertGreater(len(png), 10_000, "a blank page compresses to a few hundred bytes")
        self.server.wait_for_log(f'CN={CLIENT} "GET /whoami HTTP/1.1" 200')
        if KEEP_SCREENSHOT:
            shutil.copyfile(shot, KEEP_SCREENSHOT)

    def test_without_the_bundle_the_server_refuses_the_browser(self):
        self.nss_db(with_bundle=False)
        self.assert_refused(self.browse("--dump-dom"), CERTIFICATE_REQUIRED, "no client certificate")

    def test_revoked_client_is_refused_after_reload(self):
        self.nss_db(with_bundle=True)
        self.assert_signed_in(self.browse("--dump-dom"))
        self.bootstrap("revoke-client", CLIENT)
        reload_server(self.server)
        self.server.wait_for_log("reloaded: trusting 1 client certificate")
        self.assert_refused(self.browse("--dump-dom"), UNKNOWN_CA, "client certificate not trusted")


if __name__ == "__main__":
    unittest.main()
