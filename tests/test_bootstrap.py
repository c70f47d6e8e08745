"""Tests for bootstrap.sh: run the real script in temporary projects, then inspect and use what it wrote."""

import datetime
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest
from pathlib import Path
from unittest import mock

from tests.support import BOOTSTRAP, IN_CI, make_project, require_tool, run_bootstrap

OPENSSL = shutil.which("openssl")
TIMEOUT = 30

SERVER_FILES = {"server-cert.pem", "server-key.pem", "client-cert.pem"}
CLIENT_FILES = {"server-cert.pem", "client-cert.pem", "client-key.pem"}
STAND_INS = {"server": "webserver.py", "client": "client.py"}


def openssl(*args: str, env=None) -> subprocess.CompletedProcess:
    """Run openssl with a timeout; capture text output, never raise on failure."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([OPENSSL or "openssl", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=full_env, stdin=subprocess.DEVNULL)


def cert_text(path: Path) -> str:
    """Return `openssl x509 -noout -text` for a certificate."""
    return openssl("x509", "-noout", "-text", "-in", str(path)).stdout


def fingerprint(path: Path) -> str:
    """Return the SHA-256 fingerprint as openssl prints it (colon hex)."""
    out = openssl("x509", "-noout", "-fingerprint", "-sha256", "-in", str(path)).stdout
    return out.strip().split("=", 1)[1]


def public_key(path: Path, is_cert: bool) -> str:
    """Return the PEM public key of a certificate or a private key."""
    if is_cert:
        return openssl("x509", "-noout", "-pubkey", "-in", str(path)).stdout
    return openssl("pkey", "-pubout", "-in", str(path)).stdout


def snapshot(project: Path) -> dict:
    """Map every file under server/ and client/ to its bytes."""
    return {str(p.relative_to(project)): p.read_bytes()
            for side in ("server", "client") for p in sorted((project / side).rglob("*")) if p.is_file()}


def new_project(testcase: unittest.TestCase, *args: str) -> Path:
    """Make a temp project with the other engineer's stand-in files, run bootstrap.sh with args, assert success."""
    project = make_project(testcase)
    for side, name in STAND_INS.items():
        (project / side).mkdir()
        (project / side / name).write_text("# stand-in\n")
    result = run_bootstrap(project, *args)
    testcase.assertEqual(result.returncode, 0, result.stderr)
    return project


def pem_files(directory: Path) -> list:
    """Return the names of the .pem/.p12 files directly in a directory."""
    return sorted(p.name for p in directory.iterdir() if p.suffix in (".pem", ".p12"))


def trusted_files(project: Path) -> list:
    """Return the certificates the server trusts: server/client-cert.pem plus server/clients/*.pem."""
    default = project / "server" / "client-cert.pem"
    return ([default] if default.exists() else []) + sorted((project / "server" / "clients").glob("*.pem"))


def server_context(project: Path) -> ssl.SSLContext:
    """A strict server context from the server identity that requires a client cert from the trusted set."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.load_cert_chain(project / "server" / "server-cert.pem", project / "server" / "server-key.pem")
    for path in trusted_files(project):
        ctx.load_verify_locations(cafile=path)
    return ctx


def client_context(client_dir: Path, with_cert: bool = True) -> ssl.SSLContext:
    """A strict client context trusting client_dir/server-cert.pem and presenting client_dir's identity."""
    ctx = ssl.create_default_context(cafile=client_dir / "server-cert.pem")
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if with_cert:
        ctx.load_cert_chain(client_dir / "client-cert.pem", client_dir / "client-key.pem")
    return ctx


class HandshakeMixin:
    """A real TLS handshake over loopback between a threaded one-shot server and a client."""

    def handshake(self, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str):
        """Return (client_error, server_error); both None when the client read the server's greeting."""
        errors = {"server": None}

        def serve(listener: socket.socket) -> None:
            try:
                conn, _ = listener.accept()
                with conn:
                    conn.settimeout(TIMEOUT)
                    with server_ctx.wrap_socket(conn, server_side=True) as tls:
                        tls.sendall(b"ok")
            except OSError as exc:
                errors["server"] = exc

        client_error = None
        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(TIMEOUT)
            thread = threading.Thread(target=serve, args=(listener,))
            thread.start()
            try:
                with socket.create_connection(listener.getsockname(), timeout=TIMEOUT) as raw:
                    with client_ctx.wrap_socket(raw, server_hostname=hostname) as tls:
                        data = tls.recv(2)
                        if data != b"ok":
                            client_error = ConnectionError(f"server sent {data!r}, not the greeting")
            except OSError as exc:
                client_error = exc
            thread.join(TIMEOUT)
            self.assertFalse(thread.is_alive(), "server thread did not finish")
        return client_error, errors["server"]

    def assert_handshake_ok(self, project: Path, client_dir: Path, hostname: str = "localhost") -> None:
        client_error, server_error = self.handshake(server_context(project), client_context(client_dir), hostname)
        self.assertIsNone(client_error)
        self.assertIsNone(server_error)

    def assert_handshake_fails(self, server_ctx, client_ctx, hostname: str = "localhost") -> None:
        client_error, server_error = self.handshake(server_ctx, client_ctx, hostname)
        self.assertIsNotNone(client_error or server_error, "handshake unexpectedly succeeded")


def fake_openssl_dir(testcase: unittest.TestCase, fail_at: int) -> tuple:
    """Make a bin dir whose `openssl` logs each call and fails on call number fail_at (0: never)."""
    bindir = Path(tempfile.mkdtemp(prefix="fake-openssl-"))
    testcase.addCleanup(shutil.rmtree, bindir)
    log = bindir / "calls.log"
    wrapper = bindir / "openssl"
    wrapper.write_text(
        "#!/usr/bin/env bash\n"
        f"printf '%s\\n' \"$*\" >> '{log}'\n"
        f"n=$(wc -l < '{log}')\n"
        f"if [ \"$n\" -eq {fail_at} ]; then echo 'simulated openssl failure' >&2; exit 1; fi\n"
        f"exec '{OPENSSL}' \"$@\"\n")
    wrapper.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    return env, log


class DistributionTests(unittest.TestCase):
    def test_writes_exactly_the_distribution_table(self):
        project = new_project(self)
        self.assertEqual(set(pem_files(project / "server")), SERVER_FILES)
        self.assertEqual(set(pem_files(project / "client")), CLIENT_FILES)
        self.assertEqual(sorted(p.name for p in project.iterdir()), ["bootstrap.sh", "client", "server"])

    def test_existing_stand_in_files_are_kept(self):
        project = new_project(self)
        for side, name in STAND_INS.items():
            self.assertEqual((project / side / name).read_text(), "# stand-in\n")

    def test_each_side_holds_only_its_own_private_key(self):
        project = new_project(self)
        for side, own in (("server", "server-key.pem"), ("client", "client-key.pem")):
            with_keys = [p.name for p in (project / side).iterdir()
                         if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
            self.assertEqual(with_keys, [own])

    def test_key_matches_its_own_certificate(self):
        project = new_project(self)
        for side, role in (("server", "server"), ("client", "client")):
            self.assertEqual(public_key(project / side / f"{role}-key.pem", False),
                             public_key(project / side / f"{role}-cert.pem", True))

    def test_key_does_not_match_the_other_certificate(self):
        project = new_project(self)
        self.assertNotEqual(public_key(project / "server" / "server-key.pem", False),
                            public_key(project / "client" / "client-cert.pem", True))

    def test_both_sides_hold_identical_copies_of_the_peer_certificates(self):
        project = new_project(self)
        for name in ("server-cert.pem", "client-cert.pem"):
            self.assertEqual((project / "server" / name).read_bytes(), (project / "client" / name).read_bytes())

    def test_keys_are_0600_and_certs_0644(self):
        project = new_project(self)
        for side in ("server", "client"):
            for path in (project / side).glob("*.pem"):
                expected = 0o600 if path.name.endswith("-key.pem") else 0o644
                self.assertEqual(path.stat().st_mode & 0o777, expected, path)

    def test_modes_hold_even_under_a_permissive_umask(self):
        project = make_project(self)
        result = subprocess.run(["bash", "-c", "umask 000 && exec bash ./bootstrap.sh"], cwd=project,
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual((project / "server" / "server-key.pem").stat().st_mode & 0o777, 0o600)
        self.assertEqual((project / "client" / "client-key.pem").stat().st_mode & 0o777, 0o600)
        self.assertEqual((project / "server" / "server-cert.pem").stat().st_mode & 0o777, 0o644)

    def test_summary_lists_files_and_how_to_use_them(self):
        project = make_project(self)
        out = run_bootstrap(project).stdout
        for name in ("server/server-key.pem", "client/client-key.pem", "server/client-cert.pem"):
            self.assertIn(name, out)
        self.assertIn("cd server && python3 webserver.py", out)
        self.assertIn("curl --cacert server-cert.pem --cert client-cert.pem --key client-key.pem "
                      "https://localhost:4443", out)


class KeyTypeTests(unittest.TestCase):
    def test_default_key_is_named_curve_p256(self):
        project = new_project(self)
        key = openssl("pkey", "-noout", "-text", "-in", str(project / "server" / "server-key.pem")).stdout
        self.assertIn("ASN1 OID: prime256v1", key)
        self.assertNotIn("Field Type", key)  # explicit curve parameters would list the field
        self.assertIn("id-ecPublicKey", cert_text(project / "client" / "client-cert.pem"))

    def test_rsa_key_is_3072_bits_signed_with_sha256(self):
        project = new_project(self, "--key-type", "rsa")
        for path in (project / "server" / "server-cert.pem", project / "client" / "client-cert.pem"):
            text = cert_text(path)
            self.assertIn("rsaEncryption", text)
            self.assertIn("Public-Key: (3072 bit)", text)
            self.assertIn("Signature Algorithm: sha256WithRSAEncryption", text)

    def test_ed25519_key_and_signature(self):
        project = new_project(self, "--key-type", "ed25519")
        for path in (project / "server" / "server-cert.pem", project / "client" / "client-cert.pem"):
            text = cert_text(path)
            self.assertIn("Public Key Algorithm: ED25519", text)
            self.assertIn("Signature Algorithm: ED25519", text)

    def test_unknown_key_type_is_refused(self):
        project = make_project(self)
        result = run_bootstrap(project, "--key-type", "dsa")
        self.assertEqual(result.returncode, 2)
        self.assertIn("bootstrap: error: --key-type", result.stderr)


class ExtensionTests(unittest.TestCase):
    def setUp(self):
        self.project = new_project(self)
        self.server = cert_text(self.project / "server" / "server-cert.pem")
        self.client = cert_text(self.project / "client" / "client-cert.pem")

    def test_server_san_is_localhost_and_loopback_addresses(self):
        self.assertIn("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1\n", self.server)

    def test_client_has_no_san(self):
        self.assertNotIn("Subject Alternative Name", self.client)

    def test_server_eku_is_server_auth_only(self):
        self.assertIn("Extended Key Usage: \n                TLS Web Server Authentication\n", self.server)

    def test_client_eku_is_client_auth_only(self):
        self.assertIn("Extended Key Usage: \n                TLS Web Client Authentication\n", self.client)

    def test_basic_constraints_are_critical_ca_false(self):
        for text in (self.server, self.client):
            self.assertRegex(text, r"Basic Constraints: critical\n\s+CA:FALSE\n")

    def test_key_usage_is_critical_digital_signature_only(self):
        for text in (self.server, self.client):
            self.assertRegex(text, r"Key Usage: critical\n\s+Digital Signature\n")

    def test_authority_key_identifier_equals_subject_key_identifier(self):
        for text in (self.server, self.client):
            ski = re.search(r"Subject Key Identifier: ?\n\s+([0-9A-F:]+)\n", text)
            aki = re.search(r"Authority Key Identifier: ?\n\s+(?:keyid:)?([0-9A-F:]+)\n", text)
            self.assertIsNotNone(ski, text)
            self.assertIsNotNone(aki, text)
            self.assertEqual(ski.group(1), aki.group(1))

    def test_version_3_and_sha256_signature(self):
        for text in (self.server, self.client):
            self.assertIn("Version: 3 (0x2)", text)
            self.assertIn("Signature Algorithm: ecdsa-with-SHA256", text)

    def test_subjects_are_localhost_and_client(self):
        self.assertIn("Subject: CN = localhost\n", self.server)
        self.assertIn("Subject: CN = client\n", self.client)

    def test_serial_numbers_are_random(self):
        other = new_project(self)
        serials = [openssl("x509", "-noout", "-serial", "-in", str(p)).stdout.strip()
                   for p in (self.project / "server" / "server-cert.pem", self.project / "client" / "client-cert.pem",
                             other / "server" / "server-cert.pem")]
        self.assertEqual(len(set(serials)), 3, serials)
        self.assertGreaterEqual(len(serials[0].split("=")[1]), 16, serials)

    def test_default_validity_is_365_days(self):
        self.assertEqual(validity_days(self.project / "server" / "server-cert.pem"), 365)


def validity_days(path: Path) -> int:
    """Return notAfter - notBefore in whole days."""
    out = openssl("x509", "-noout", "-startdate", "-enddate", "-in", str(path)).stdout
    dates = dict(line.split("=", 1) for line in out.splitlines())
    seconds = ssl.cert_time_to_seconds(dates["notAfter"]) - ssl.cert_time_to_seconds(dates["notBefore"])
    return seconds // 86400


class OptionTests(unittest.TestCase):
    def assert_usage_error(self, *args: str, flag: str) -> None:
        project = make_project(self)
        result = run_bootstrap(project, *args)
        self.assertEqual(result.returncode, 2, result.stdout)
        self.assertIn("bootstrap: error: ", result.stderr)
        self.assertIn(flag, result.stderr)
        self.assertEqual(sorted(p.name for p in project.iterdir()), ["bootstrap.sh"])

    def test_san_adds_dns_and_ip_names(self):
        project = new_project(self, "--san", "demo.example", "--san", "10.1.2.3", "--san", "2001:db8::1")
        text = cert_text(project / "server" / "server-cert.pem")
        self.assertIn("DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, DNS:demo.example, "
                      "IP Address:10.1.2.3, IP Address:2001:DB8:0:0:0:0:0:1\n", text)

    def test_san_refuses_a_value_that_is_neither_name_nor_address(self):
        self.assert_usage_error("--san", "not a name!", flag="--san")

    def test_client_cn_sets_the_client_subject(self):
        project = new_project(self, "--client-cn", "alice")
        self.assertIn("Subject: CN = alice\n", cert_text(project / "client" / "client-cert.pem"))

    def test_client_cn_refuses_a_slash(self):
        self.assert_usage_error("--client-cn", "a/b", flag="--client-cn")

    def test_days_sets_validity(self):
        project = new_project(self, "--days", "30")
        self.assertEqual(validity_days(project / "client" / "client-cert.pem"), 30)

    def test_days_zero_is_refused(self):
        self.assert_usage_error("--days", "0", flag="--days")

    def test_days_not_a_number_is_refused(self):
        self.assert_usage_error("--days", "x", flag="--days")

    def test_days_without_value_is_refused(self):
        self.assert_usage_error("--days", flag="--days")

    def test_unknown_flag_is_refused(self):
        self.assert_usage_error("--bogus", flag="--bogus")

    def test_subcommand_flag_is_refused_on_other_commands(self):
        self.assert_usage_error("--legacy", flag="--legacy")

    def test_help_prints_usage_examples_and_exits_0(self):
        project = make_project(self)
        result = run_bootstrap(project, "--help")
        self.assertEqual(result.returncode, 0)
        self.assertIn("Usage: ./bootstrap.sh", result.stdout)
        self.assertIn("$ ./bootstrap.sh --key-type rsa", result.stdout)
        self.assertIn("365", result.stdout)
        self.assertEqual(sorted(p.name for p in project.iterdir()), ["bootstrap.sh"])


class StrictVerifyTests(HandshakeMixin, unittest.TestCase):
    def setUp(self):
        self.project = new_project(self)
        self.server_cert = str(self.project / "client" / "server-cert.pem")
        self.client_cert = str(self.project / "server" / "client-cert.pem")

    def verify(self, purpose: str, cafile: str, cert: str) -> subprocess.CompletedProcess:
        return openssl("verify", "-x509_strict", "-purpose", purpose, "-CAfile", cafile, cert)

    def test_openssl_strict_accepts_server_cert_as_sslserver(self):
        result = self.verify("sslserver", self.server_cert, self.server_cert)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_openssl_strict_rejects_server_cert_as_sslclient(self):
        self.assertNotEqual(self.verify("sslclient", self.server_cert, self.server_cert).returncode, 0)

    def test_openssl_strict_accepts_client_cert_as_sslclient(self):
        result = self.verify("sslclient", self.client_cert, self.client_cert)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_openssl_strict_rejects_client_cert_as_sslserver(self):
        self.assertNotEqual(self.verify("sslserver", self.client_cert, self.client_cert).returncode, 0)

    def test_openssl_rejects_client_cert_against_the_server_cert(self):
        self.assertNotEqual(self.verify("sslclient", self.server_cert, self.client_cert).returncode, 0)

    def test_python_strict_handshake_for_localhost(self):
        self.assertTrue(client_context(self.project / "client").verify_flags & ssl.VERIFY_X509_STRICT)
        self.assert_handshake_ok(self.project, self.project / "client", "localhost")

    def test_python_strict_handshake_for_127_0_0_1(self):
        self.assert_handshake_ok(self.project, self.project / "client", "127.0.0.1")

    def test_python_strict_handshake_for_ipv6_loopback_name(self):
        self.assert_handshake_ok(self.project, self.project / "client", "::1")

    def test_handshake_rejects_a_hostname_not_in_the_san(self):
        client_error, _ = self.handshake(server_context(self.project), client_context(self.project / "client"),
                                         "example.com")
        self.assertIsInstance(client_error, ssl.SSLCertVerificationError)

    def test_handshake_rejects_a_client_without_a_certificate(self):
        self.assert_handshake_fails(server_context(self.project),
                                    client_context(self.project / "client", with_cert=False))

    def test_handshake_rejects_a_server_from_another_project(self):
        other = new_project(self)
        client_error, _ = self.handshake(server_context(other), client_context(self.project / "client"),
                                         "localhost")
        self.assertIsInstance(client_error, ssl.SSLCertVerificationError)

    def test_handshake_rejects_a_client_from_another_project(self):
        other = new_project(self)
        (other / "client" / "server-cert.pem").write_bytes((self.project / "client" / "server-cert.pem").read_bytes())
        self.assert_handshake_fails(server_context(self.project), client_context(other / "client"))


class KeyTypeHandshakeTests(HandshakeMixin, unittest.TestCase):
    def test_python_strict_handshake_with_rsa(self):
        project = new_project(self, "--key-type", "rsa")
        self.assert_handshake_ok(project, project / "client")

    def test_python_strict_handshake_with_ed25519(self):
        project = new_project(self, "--key-type", "ed25519")
        self.assert_handshake_ok(project, project / "client")

    def test_python_strict_handshake_with_extra_san(self):
        project = new_project(self, "--san", "10.9.8.7", "--san", "demo.example")
        self.assert_handshake_ok(project, project / "client", "demo.example")
        self.assert_handshake_ok(project, project / "client", "10.9.8.7")


class RerunTests(unittest.TestCase):
    def test_rerun_keeps_files_byte_identical_and_says_so(self):
        project = new_project(self)
        before = snapshot(project)
        result = run_bootstrap(project)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("already exist", result.stdout)
        self.assertIn("--force", result.stdout)
        self.assertEqual(len(result.stdout.splitlines()), 1, result.stdout)
        self.assertEqual(snapshot(project), before)

    def test_force_replaces_keys_and_certs(self):
        project = new_project(self)
        before = snapshot(project)
        result = run_bootstrap(project, "--force")
        self.assertEqual(result.returncode, 0, result.stderr)
        after = snapshot(project)
        for name in ("server/server-key.pem", "client/client-key.pem", "server/server-cert.pem",
                     "client/client-cert.pem"):
            self.assertNotEqual(after[name], before[name], name)
        self.assertEqual(after["server/server-cert.pem"], after["client/server-cert.pem"])

    def test_partial_identity_is_refused_without_force(self):
        project = new_project(self)
        (project / "client" / "client-key.pem").unlink()
        before = snapshot(project)
        result = run_bootstrap(project)
        self.assertEqual(result.returncode, 1)
        self.assertIn("--force", result.stderr)
        self.assertEqual(snapshot(project), before)

    def test_force_refreshes_the_server_cert_of_added_clients(self):
        project = new_project(self)
        self.assertEqual(run_bootstrap(project, "add-client", "alice").returncode, 0)
        self.assertEqual(run_bootstrap(project, "--force").returncode, 0)
        self.assertEqual((project / "client" / "alice" / "server-cert.pem").read_bytes(),
                         (project / "server" / "server-cert.pem").read_bytes())


class FailureTests(unittest.TestCase):
    def count_openssl_calls(self) -> int:
        """Run once through the logging wrapper without failing; return how many openssl calls a run makes."""
        env, log = fake_openssl_dir(self, fail_at=0)
        result = run_bootstrap(make_project(self), env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        return len(log.read_text().splitlines())

    def test_counting_wrapper_run_succeeds(self):
        self.assertGreaterEqual(self.count_openssl_calls(), 4)

    def test_failed_run_leaves_no_half_written_files(self):
        for fail_at in range(1, self.count_openssl_calls() + 1):
            with self.subTest(fail_at=fail_at):
                env, _ = fake_openssl_dir(self, fail_at)
                project = make_project(self)
                for side, name in STAND_INS.items():
                    (project / side).mkdir()
                    (project / side / name).write_text("# stand-in\n")
                result = run_bootstrap(project, env=env)
                self.assertEqual(result.returncode, 1)
                self.assertEqual(sorted(p.name for p in project.iterdir()), ["bootstrap.sh", "client", "server"])
                for side, name in STAND_INS.items():
                    self.assertEqual([p.name for p in (project / side).iterdir()], [name])

    def test_failed_force_run_keeps_the_old_identities(self):
        project = new_project(self)
        before = snapshot(project)
        env, _ = fake_openssl_dir(self, fail_at=self.count_openssl_calls())  # the very last call
        self.assertEqual(run_bootstrap(project, "--force", env=env).returncode, 1)
        self.assertEqual(snapshot(project), before)

    def test_failed_openssl_call_shows_command_and_output(self):
        env, _ = fake_openssl_dir(self, fail_at=1)
        result = run_bootstrap(make_project(self), env=env)
        self.assertIn("bootstrap: error: command failed: openssl genpkey", result.stderr)
        self.assertIn("simulated openssl failure", result.stderr)

    def test_successful_openssl_calls_are_silent(self):
        result = run_bootstrap(make_project(self))
        self.assertEqual(result.stderr, "")


class MissingOpensslTests(unittest.TestCase):
    TOOLS = ("bash", "cat", "chmod", "cp", "mkdir", "mktemp", "mv", "rm", "sort", "tr")

    def minimal_path(self, with_openssl: bool) -> dict:
        bindir = Path(tempfile.mkdtemp(prefix="bin-"))
        self.addCleanup(shutil.rmtree, bindir)
        for tool in self.TOOLS + (("openssl",) if with_openssl else ()):
            (bindir / tool).symlink_to(shutil.which(tool))
        return {"PATH": str(bindir)}

    def test_missing_openssl_is_reported_with_the_fix(self):
        project = make_project(self)
        result = run_bootstrap(project, env=self.minimal_path(with_openssl=False))
        self.assertNotEqual(result.returncode, 0)
        self.assertEqual(result.stderr, "bootstrap: error: openssl not found; install it "
                                        "(Debian/Ubuntu: apt install openssl; macOS: brew install openssl)\n")
        self.assertEqual(sorted(p.name for p in project.iterdir()), ["bootstrap.sh"])

    def test_minimal_path_with_openssl_succeeds(self):
        result = run_bootstrap(make_project(self), env=self.minimal_path(with_openssl=True))
        self.assertEqual(result.returncode, 0, result.stderr)


class ShellcheckTests(unittest.TestCase):
    def test_shellcheck_is_clean(self):
        shellcheck = require_tool(self, "shellcheck")
        result = subprocess.run([shellcheck, "-S", "warning", str(BOOTSTRAP)], capture_output=True, text=True,
                                timeout=TIMEOUT)
        self.assertEqual(result.returncode, 0, result.stdout)

    def test_shellcheck_flags_an_unquoted_variable(self):
        shellcheck = require_tool(self, "shellcheck")
        with tempfile.NamedTemporaryFile("w", suffix=".sh") as script:
            script.write('#!/usr/bin/env bash\nrm -rf $1/*\n')
            script.flush()
            result = subprocess.run([shellcheck, "-S", "warning", script.name], capture_output=True, text=True,
                                    timeout=TIMEOUT)
        self.assertNotEqual(result.returncode, 0)


class AddClientTests(HandshakeMixin, unittest.TestCase):
    def setUp(self):
        self.project = new_project(self)

    def add(self, *args: str) -> subprocess.CompletedProcess:
        return run_bootstrap(self.project, "add-client", *args)

    def test_add_client_writes_files_with_modes(self):
        self.assertEqual(self.add("alice").returncode, 0)
        alice = self.project / "client" / "alice"
        self.assertEqual(pem_files(alice), ["client-cert.pem", "client-key.pem", "server-cert.pem"])
        self.assertEqual((alice / "client-key.pem").stat().st_mode & 0o777, 0o600)
        self.assertEqual((alice / "client-cert.pem").stat().st_mode & 0o777, 0o644)
        self.assertEqual(pem_files(self.project / "server" / "clients"), ["alice.pem"])
        self.assertEqual((self.project / "server" / "clients" / "alice.pem").stat().st_mode & 0o777, 0o644)

    def test_trusted_copy_equals_the_client_cert(self):
        self.add("alice")
        self.assertEqual((self.project / "server" / "clients" / "alice.pem").read_bytes(),
                         (self.project / "client" / "alice" / "client-cert.pem").read_bytes())
        self.assertEqual((self.project / "client" / "alice" / "server-cert.pem").read_bytes(),
                         (self.project / "server" / "server-cert.pem").read_bytes())

    def test_add_client_touches_nothing_else(self):
        self.add("bob")
        before = snapshot(self.project)
        self.assertEqual(self.add("alice").returncode, 0)
        after = snapshot(self.project)
        self.assertEqual({k: v for k, v in after.items() if "alice" not in k}, before)

    def test_added_client_has_the_client_profile(self):
        self.add("alice")
        cert = self.project / "client" / "alice" / "client-cert.pem"
        text = cert_text(cert)
        self.assertIn("Subject: CN = alice\n", text)
        self.assertIn("TLS Web Client Authentication", text)
        self.assertRegex(text, r"Key Usage: critical\n\s+Digital Signature\n")
        ok = openssl("verify", "-x509_strict", "-purpose", "sslclient", "-CAfile", str(cert), str(cert))
        self.assertEqual(ok.returncode, 0, ok.stdout + ok.stderr)

    def test_added_client_is_not_a_server(self):
        self.add("alice")
        cert = str(self.project / "client" / "alice" / "client-cert.pem")
        self.assertNotEqual(openssl("verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", cert,
                                    cert).returncode, 0)

    def test_add_client_takes_key_type_and_days(self):
        self.assertEqual(self.add("bob", "--key-type", "ed25519", "--days", "10").returncode, 0)
        cert = self.project / "client" / "bob" / "client-cert.pem"
        self.assertIn("Public Key Algorithm: ED25519", cert_text(cert))
        self.assertEqual(validity_days(cert), 10)

    def test_added_client_completes_a_strict_handshake(self):
        self.add("alice")
        self.assert_handshake_ok(self.project, self.project / "client" / "alice")

    def test_add_client_refuses_bad_names(self):
        for name in ("../x", "", "a b", "a" * 65, "client", "Alice", ".", "..", "x/y"):
            with self.subTest(name=name):
                result = self.add(name)
                self.assertEqual(result.returncode, 2, result.stdout)
                self.assertIn("bootstrap: error: NAME", result.stderr)
        self.assertFalse((self.project / "server" / "clients").exists())
        self.assertEqual(sorted(p.name for p in (self.project / "client").iterdir() if p.is_dir()), [])

    def test_add_client_accepts_a_64_character_name(self):
        self.assertEqual(self.add("a" * 64).returncode, 0)

    def test_add_client_refuses_an_existing_name_without_force(self):
        self.add("alice")
        before = snapshot(self.project)
        result = self.add("alice")
        self.assertEqual(result.returncode, 1)
        self.assertIn("--force", result.stderr)
        self.assertEqual(snapshot(self.project), before)

    def test_add_client_force_replaces_an_existing_name(self):
        self.add("alice")
        key = (self.project / "client" / "alice" / "client-key.pem").read_bytes()
        self.assertEqual(self.add("alice", "--force").returncode, 0)
        self.assertNotEqual((self.project / "client" / "alice" / "client-key.pem").read_bytes(), key)
        self.assertEqual((self.project / "server" / "clients" / "alice.pem").read_bytes(),
                         (self.project / "client" / "alice" / "client-cert.pem").read_bytes())

    def test_add_client_requires_the_server_identity(self):
        project = make_project(self)
        result = run_bootstrap(project, "add-client", "alice")
        self.assertEqual(result.returncode, 1)
        self.assertIn("run ./bootstrap.sh first", result.stderr)
        self.assertEqual(sorted(p.name for p in project.iterdir()), ["bootstrap.sh"])

    def test_add_client_refuses_the_default_clients_cn_without_force(self):
        project = new_project(self, "--client-cn", "alice")
        result = run_bootstrap(project, "add-client", "alice")
        self.assertEqual(result.returncode, 1)
        self.assertIn("CN=alice", result.stderr)
        self.assertFalse((project / "client" / "alice").exists())

    def test_add_client_force_allows_a_shared_cn(self):
        project = new_project(self, "--client-cn", "alice")
        self.assertEqual(run_bootstrap(project, "add-client", "alice", "--force").returncode, 0)


class RevokeClientTests(HandshakeMixin, unittest.TestCase):
    def setUp(self):
        self.project = new_project(self)
        self.assertEqual(run_bootstrap(self.project, "add-client", "alice").returncode, 0)

    def test_revoke_moves_the_cert_out_of_the_trusted_set(self):
        cert = (self.project / "server" / "clients" / "alice.pem").read_bytes()
        result = run_bootstrap(self.project, "revoke-client", "alice")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertFalse((self.project / "server" / "clients" / "alice.pem").exists())
        self.assertEqual((self.project / "server" / "revoked" / "alice.pem").read_bytes(), cert)
        self.assertIn("kill -HUP", result.stdout)

    def test_revoke_default_client(self):
        cert = (self.project / "server" / "client-cert.pem").read_bytes()
        self.assertEqual(run_bootstrap(self.project, "revoke-client", "client").returncode, 0)
        self.assertFalse((self.project / "server" / "client-cert.pem").exists())
        self.assertEqual((self.project / "server" / "revoked" / "client.pem").read_bytes(), cert)

    def test_revoke_unknown_name_fails(self):
        result = run_bootstrap(self.project, "revoke-client", "nobody")
        self.assertEqual(result.returncode, 1)
        self.assertIn("'nobody'", result.stderr)

    def test_revoke_twice_fails(self):
        run_bootstrap(self.project, "revoke-client", "alice")
        result = run_bootstrap(self.project, "revoke-client", "alice")
        self.assertEqual(result.returncode, 1)
        self.assertIn("already revoked", result.stderr)

    def test_revoke_refuses_a_path_as_name(self):
        self.assertEqual(run_bootstrap(self.project, "revoke-client", "../server-key").returncode, 2)

    def test_revoked_client_fails_the_handshake(self):
        run_bootstrap(self.project, "revoke-client", "alice")
        self.assert_handshake_fails(server_context(self.project), client_context(self.project / "client" / "alice"))

    def test_revoking_one_client_keeps_the_others(self):
        run_bootstrap(self.project, "revoke-client", "client")
        self.assert_handshake_ok(self.project, self.project / "client" / "alice")


class ListTests(unittest.TestCase):
    HEADER = ["ROLE", "NAME", "KEY", "SHA256", "EXPIRES", "TRUSTED"]

    def rows(self, project: Path) -> dict:
        result = run_bootstrap(project, "list")
        self.assertEqual(result.returncode, 0, result.stderr)
        lines = [re.split(r"\s{2,}", line.rstrip()) for line in result.stdout.splitlines()]
        self.assertEqual(lines[0], self.HEADER)
        return {row[1]: dict(zip(self.HEADER, row)) for row in lines[1:]}

    def test_list_has_a_row_per_identity_with_fingerprints(self):
        project = new_project(self)
        run_bootstrap(project, "add-client", "bob", "--key-type", "ed25519")
        rows = self.rows(project)
        self.assertEqual(sorted(rows), ["bob", "client", "server"])
        self.assertEqual(rows["server"]["SHA256"], fingerprint(project / "server" / "server-cert.pem"))
        self.assertEqual(rows["client"]["SHA256"], fingerprint(project / "client" / "client-cert.pem"))
        self.assertEqual(rows["bob"]["SHA256"], fingerprint(project / "client" / "bob" / "client-cert.pem"))
        self.assertEqual([rows[n]["ROLE"] for n in ("server", "client", "bob")], ["server", "client", "client"])

    def test_list_shows_key_types(self):
        project = new_project(self)
        run_bootstrap(project, "add-client", "bob", "--key-type", "ed25519")
        rows = self.rows(project)
        self.assertEqual(rows["server"]["KEY"], "EC P-256")
        self.assertEqual(rows["bob"]["KEY"], "Ed25519")

    def test_list_shows_expiry_dates(self):
        project = new_project(self, "--days", "20")
        out = openssl("x509", "-noout", "-enddate", "-in", str(project / "server" / "server-cert.pem")).stdout
        expected = datetime.datetime.fromtimestamp(ssl.cert_time_to_seconds(out.strip().split("=", 1)[1]),
                                                   datetime.timezone.utc).date().isoformat()
        self.assertEqual(self.rows(project)["server"]["EXPIRES"], expected)

    def test_list_trust_changes_after_revoke(self):
        project = new_project(self)
        run_bootstrap(project, "add-client", "alice")
        before = self.rows(project)
        self.assertEqual([before[n]["TRUSTED"] for n in ("server", "client", "alice")], ["-", "yes", "yes"])
        run_bootstrap(project, "revoke-client", "alice")
        run_bootstrap(project, "revoke-client", "client")
        after = self.rows(project)
        self.assertEqual([after[n]["TRUSTED"] for n in ("client", "alice")], ["no", "no"])

    def test_list_shows_revoked_clients_whose_files_are_gone(self):
        project = new_project(self)
        run_bootstrap(project, "add-client", "alice")
        run_bootstrap(project, "revoke-client", "alice")
        shutil.rmtree(project / "client" / "alice")
        self.assertEqual(self.rows(project)["alice"]["TRUSTED"], "no")

    def test_list_without_identities_fails(self):
        result = run_bootstrap(make_project(self), "list")
        self.assertEqual(result.returncode, 1)
        self.assertIn("run ./bootstrap.sh first", result.stderr)


class ExportP12Tests(unittest.TestCase):
    PASSWORD = {"P12_PASSWORD": "correct horse"}

    def setUp(self):
        self.project = new_project(self)
        self.p12 = self.project / "client" / "client.p12"

    def read_p12(self, *args: str, password: str = "correct horse") -> subprocess.CompletedProcess:
        return openssl("pkcs12", "-in", str(self.p12), "-passin", "env:P12_PASSWORD", *args,
                       env={"P12_PASSWORD": password})

    def test_export_reads_back_with_the_password(self):
        result = run_bootstrap(self.project, "export-p12", "client", env=self.PASSWORD)
        self.assertEqual(result.returncode, 0, result.stderr)
        certs = self.read_p12("-nokeys")
        self.assertEqual(certs.returncode, 0, certs.stderr)
        self.assertIn("friendlyName: client", certs.stdout)
        self.assertEqual(fingerprint_of_pem(certs.stdout), fingerprint(self.project / "client" / "client-cert.pem"))
        keys = self.read_p12("-nocerts", "-nodes")
        self.assertIn("PRIVATE KEY", keys.stdout)

    def test_export_with_a_wrong_password_fails_to_read(self):
        run_bootstrap(self.project, "export-p12", "client", env=self.PASSWORD)
        self.assertNotEqual(self.read_p12("-nokeys", password="wrong").returncode, 0)

    def test_export_is_mode_0600(self):
        run_bootstrap(self.project, "export-p12", "client", env=self.PASSWORD)
        self.assertEqual(self.p12.stat().st_mode & 0o777, 0o600)

    def test_export_of_an_added_client(self):
        run_bootstrap(self.project, "add-client", "alice")
        self.assertEqual(run_bootstrap(self.project, "export-p12", "alice", env=self.PASSWORD).returncode, 0)
        self.p12 = self.project / "client" / "alice.p12"
        self.assertIn("friendlyName: alice", self.read_p12("-nokeys").stdout)

    def test_export_of_an_unknown_client_fails(self):
        result = run_bootstrap(self.project, "export-p12", "nobody", env=self.PASSWORD)
        self.assertEqual(result.returncode, 1)
        self.assertIn("'nobody'", result.stderr)

    def test_export_refuses_an_empty_password(self):
        result = run_bootstrap(self.project, "export-p12", "client", env={"P12_PASSWORD": ""})
        self.assertEqual(result.returncode, 1)
        self.assertIn("empty password", result.stderr)
        self.assertFalse(self.p12.exists())

    def test_export_without_password_or_terminal_fails(self):
        with mock.patch.dict(os.environ):
            os.environ.pop("P12_PASSWORD", None)
            result = run_bootstrap(self.project, "export-p12", "client")
        self.assertEqual(result.returncode, 1)
        self.assertIn("P12_PASSWORD", result.stderr)
        self.assertFalse(self.p12.exists())

    def run_on_terminal(self, typed: str) -> subprocess.CompletedProcess:
        """Run export-p12 under util-linux `script`, so stdin is a terminal, typing the given lines."""
        script = require_tool(self, "script")
        version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=TIMEOUT)
        if "util-linux" not in version.stdout:
            raise unittest.SkipTest("needs util-linux script to provide a terminal")
        with mock.patch.dict(os.environ):
            os.environ.pop("P12_PASSWORD", None)
            return subprocess.run([script, "-qec", "bash ./bootstrap.sh export-p12 client", "/dev/null"],
                                  cwd=self.project, input=typed, capture_output=True, text=True, timeout=60)

    def test_export_prompts_twice_on_a_terminal(self):
        result = self.run_on_terminal("typed secret\ntyped secret\n")
        self.assertEqual(result.returncode, 0, result.stdout)
        self.assertIn("Repeat it:", result.stdout)
        self.assertEqual(self.read_p12("-nokeys", password="typed secret").returncode, 0)

    def test_export_refuses_two_different_terminal_passwords(self):
        result = self.run_on_terminal("typed secret\nother secret\n")
        self.assertEqual(result.returncode, 1)
        self.assertIn("differ", result.stdout)
        self.assertFalse(self.p12.exists())

    def test_password_never_appears_on_the_openssl_command_line(self):
        env, log = fake_openssl_dir(self, fail_at=0)
        self.assertEqual(run_bootstrap(self.project, "export-p12", "client", env=dict(env, **self.PASSWORD))
                         .returncode, 0)
        self.assertIn("pkcs12 -export", log.read_text())
        self.assertNotIn("correct horse", log.read_text())

    def test_legacy_export_reads_back_with_legacy(self):
        if openssl("list", "-providers", "-provider", "legacy").returncode != 0:
            if IN_CI:
                self.fail("the OpenSSL legacy provider is required under CI=true")
            raise unittest.SkipTest("this openssl has no legacy provider to read the bundle")
        result = run_bootstrap(self.project, "export-p12", "client", "--legacy", env=self.PASSWORD)
        self.assertEqual(result.returncode, 0, result.stderr)
        info = self.read_p12("-legacy", "-nokeys", "-info")
        self.assertEqual(info.returncode, 0, info.stderr)
        self.assertIn("MAC: sha1", info.stderr)
        self.assertIn("friendlyName: client", info.stdout)

    def test_legacy_export_falls_back_to_sha1_3des_without_the_legacy_flag(self):
        bindir = Path(tempfile.mkdtemp(prefix="old-openssl-"))
        self.addCleanup(shutil.rmtree, bindir)
        wrapper = bindir / "openssl"  # an openssl whose pkcs12 lacks -legacy, like 1.1.1 or LibreSSL
        wrapper.write_text("#!/usr/bin/env bash\n"
                           "if [ \"$1 $2\" = 'pkcs12 -help' ]; then\n"
                           f"  '{OPENSSL}' pkcs12 -help 2>&1 | grep -v -- '-legacy'; exit 0\n"
                           "fi\n"
                           f"exec '{OPENSSL}' \"$@\"\n")
        wrapper.chmod(0o755)
        env = dict(self.PASSWORD, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
        result = run_bootstrap(self.project, "export-p12", "client", "--legacy", env=env)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("PBE-SHA1-3DES", result.stdout)
        info = self.read_p12("-nokeys", "-info")  # 3DES needs no legacy provider to read
        self.assertEqual(info.returncode, 0, info.stderr)
        self.assertIn("MAC: sha1", info.stderr)
        self.assertIn("pbeWithSHA1And3-KeyTripleDES-CBC", info.stderr)

    def test_default_export_is_not_legacy(self):
        run_bootstrap(self.project, "export-p12", "client", env=self.PASSWORD)
        info = self.read_p12("-nokeys", "-info")
        self.assertEqual(info.returncode, 0, info.stderr)
        self.assertNotIn("MAC: sha1", info.stderr)


def fingerprint_of_pem(text: str) -> str:
    """Return the SHA-256 fingerprint of the first PEM certificate in text."""
    pem = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", text, re.S).group(0)
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as f:
        f.write(pem)
        f.flush()
        return fingerprint(Path(f.name))


if __name__ == "__main__":
    unittest.main()
