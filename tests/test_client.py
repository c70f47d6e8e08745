"""client/client.py in-process (`main([...])`) and as a user runs it, against the real server.

Every success has its failure twin: the right identities print Hello world!, and an impostor
server, a wrong host name, an impostor client, a dead port, missing or mismatched files, a bad
URL and a 404 each fail with one line on stderr that says why, and never a traceback.
"""

import contextlib
import gc
import io
import socket
import ssl
import struct
import subprocess
import sys
import threading
import unittest
import warnings
from typing import List, Tuple

from tests.harness import (CLIENT, class_scope, load_client_module, make_identities, run,
                           run_client, start_server)

HELLO = "Hello world!\n"


client = load_client_module()


def call_main(argv: List[str]) -> Tuple[int, str, str]:
    """Run client.main(argv) in-process; return (exit code, stdout, stderr).

    ResourceWarnings (an unclosed socket) are collected and fail the call: under -W error they
    would only be printed from a finalizer, never raised.
    """
    out, err = io.StringIO(), io.StringIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = client.main(argv)
            except SystemExit as exc:  # argparse errors
                code = exc.code
        gc.collect()
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    if leaks:
        raise AssertionError(f"client.main leaked resources: {leaks}")
    return code, out.getvalue(), err.getvalue()


def free_port() -> int:
    """A loopback port with nothing listening on it (bound, noted, closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ClientTestCase(unittest.TestCase):
    """Shared assertions: failures are one line on stderr, exit non-zero, no traceback."""

    def assertOneLineError(self, stderr: str, *phrases: str) -> None:
        self.assertNotIn("Traceback", stderr)
        self.assertNotIn("ResourceWarning", stderr)
        lines = stderr.splitlines()
        self.assertEqual(len(lines), 1, stderr)
        self.assertTrue(lines[0].startswith("client: error: "), stderr)
        for phrase in phrases:
            self.assertIn(phrase, lines[0])


class AgainstTrustedServer(ClientTestCase):
    """One project's identities and server, shared by the tests that dial it."""

    @classmethod
    def setUpClass(cls):
        scope = class_scope(cls)
        cls.ids = make_identities(scope)
        cls.impostor = make_identities(scope)  # another bootstrap: same CNs, different keys
        cls.server = start_server(scope, cls.ids)
        cls.url = f"https://localhost:{cls.server.port}/"

    # -- success -----------------------------------------------------------------------------

    def test_prints_hello_world_and_exits_0(self):
        result = run_client(self.ids, self.server.port)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, HELLO)
        self.assertEqual(result.stderr, "")

    def test_main_in_process_prints_hello_world(self):
        code, out, err = call_main([*self.ids.client_args(), self.url])
        self.assertEqual((code, out, err), (0, HELLO, ""))

    def test_verbose_shows_tls_version_cipher_and_server_subject(self):
        result = run_client(self.ids, self.server.port, "-v")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, HELLO)
        self.assertIn("* TLSv1.3, cipher TLS_", result.stderr)
        self.assertIn("server certificate: commonName=localhost (verified", result.stderr)

    def test_verbose_is_off_by_default(self):
        code, out, err = call_main([*self.ids.client_args(), self.url])
        self.assertEqual(code, 0, err)
        self.assertNotIn("TLSv1", err)

    def test_fetch_works_over_tls_1_2(self):
        context = client.client_context(self.ids.cacert, self.ids.client_cert, self.ids.client_key)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        self.assertEqual(client.fetch(self.url, context, 10, False), b"Hello world!")

    def test_fetch_works_over_tls_1_3(self):
        context = client.client_context(self.ids.cacert, self.ids.client_cert, self.ids.client_key)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        self.assertEqual(client.fetch(self.url, context, 10, False), b"Hello world!")

    # -- the server must prove itself -----------------------------------------------------------

    def test_rejects_impostor_server_certificate(self):
        result = run_client(self.ids, self.server.port, "--cacert", str(self.impostor.cacert))
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertOneLineError(result.stderr, "certificate verification failed")

    def test_main_in_process_rejects_impostor_server_certificate(self):
        code, out, err = call_main([*self.ids.client_args(), "--cacert", str(self.impostor.cacert),
                                    self.url])
        self.assertEqual(code, 1, err)
        self.assertEqual(out, "")
        self.assertOneLineError(err, "certificate verification failed")

    # -- the server must accept us ---------------------------------------------------------------

    def test_reports_server_rejected_impostor_client_certificate(self):
        # TLS 1.3 (the default): the refusal arrives after our handshake, on the first read.
        result = run_client(self.ids, self.server.port, "--cert", str(self.impostor.client_cert),
                            "--key", str(self.impostor.client_key))
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertOneLineError(result.stderr, "the server rejected our client certificate")

    def test_reports_server_rejected_impostor_client_certificate_over_tls_1_2(self):
        # TLS 1.2: the refusal is an alert inside the handshake, i.e. in connect().
        context = client.client_context(self.ids.cacert, self.impostor.client_cert,
                                        self.impostor.client_key)
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        with self.assertRaises(client.ClientError) as raised:
            client.fetch(self.url, context, 10, False)
        self.assertIn("the server rejected our client certificate", str(raised.exception))
        self.assertEqual(raised.exception.exit_code, 1)

    # -- HTTP --------------------------------------------------------------------------------------

    def test_unknown_path_exits_1_naming_the_status(self):
        result = run_client(self.ids, self.server.port, path="/nope")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertOneLineError(result.stderr, "404", "/nope")


class OneShotTLSServer:
    """A TLS server for one connection (client certificate required) that reads the request,
    then misbehaves as `answer(tls)` says, the way servers other than ours might."""

    def __init__(self, testcase: unittest.TestCase, ids, answer):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(ids.server_cert, ids.server_key)
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.load_verify_locations(cafile=str(ids.trusted))
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self.serve_one, daemon=True)
        self.thread.start()
        testcase.addCleanup(self.close)

    def serve_one(self) -> None:
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                with self.context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(4096)  # the request
                    self.answer(tls)
            except OSError:
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(15)
        assert not self.thread.is_alive(), "one-shot TLS server thread still running"


def reset(tls: ssl.SSLSocket) -> None:
    tls.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def not_http(tls: ssl.SSLSocket) -> None:
    tls.sendall(b"SSH-2.0-not-http\r\n")
    tls.unwrap()


class OtherServers(ClientTestCase):

    @classmethod
    def setUpClass(cls):
        cls.ids = make_identities(class_scope(cls))

    def fetch_from(self, answer) -> Tuple[int, str, str]:
        server = OneShotTLSServer(self, self.ids, answer)
        return call_main([*self.ids.client_args(), f"https://localhost:{server.port}/"])

    def test_reset_after_handshake_is_one_line_exit_1(self):
        code, out, err = self.fetch_from(reset)
        self.assertEqual(code, 1, err)
        self.assertEqual(out, "")
        self.assertOneLineError(err, "connection closed before any answer")

    def test_answer_that_is_not_http_is_one_line_exit_1(self):
        code, out, err = self.fetch_from(not_http)
        self.assertEqual(code, 1, err)
        self.assertEqual(out, "")
        self.assertOneLineError(err, "did not answer in HTTP")


class HostName(ClientTestCase):
    """The certificate names localhost, 127.0.0.1 and ::1; 127.0.0.2 is loopback but not named."""

    @classmethod
    def setUpClass(cls):
        scope = class_scope(cls)
        cls.ids = make_identities(scope)
        try:
            cls.server = start_server(scope, cls.ids, "--bind", "127.0.0.2")
        except AssertionError as exc:  # pragma: no cover - only where 127.0.0.0/8 is not all loopback
            raise unittest.SkipTest(f"cannot bind 127.0.0.2: {exc}")

    def dial(self, host: str) -> subprocess.CompletedProcess:
        return run([sys.executable, "-W", "error", str(CLIENT), *self.ids.client_args(),
                    f"https://{host}:{self.server.port}/"])

    def test_accepts_server_at_address_named_in_certificate(self):
        # Twin of the mismatch below: same server certificate, dialled by a name it carries.
        server = start_server(self, self.ids, "--bind", "127.0.0.1")
        result = run([sys.executable, "-W", "error", str(CLIENT), *self.ids.client_args(),
                      f"https://127.0.0.1:{server.port}/"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, HELLO)

    def test_rejects_server_at_address_not_in_certificate(self):
        result = self.dial("127.0.0.2")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertOneLineError(result.stderr, "certificate verification failed", "127.0.0.2")


class Unreachable(ClientTestCase):

    @classmethod
    def setUpClass(cls):
        cls.ids = make_identities(class_scope(cls))

    def test_dead_port_exits_1_naming_host_and_port(self):
        port = free_port()
        result = run_client(self.ids, port)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertOneLineError(result.stderr, "cannot reach", f"localhost:{port}")

    def test_main_in_process_dead_port_exits_1(self):
        port = free_port()
        code, out, err = call_main([*self.ids.client_args(), f"https://localhost:{port}/"])
        self.assertEqual(code, 1, err)
        self.assertOneLineError(err, "cannot reach", f"localhost:{port}")

    def test_silent_listener_is_reported_as_no_tls_handshake(self):
        with socket.socket() as silent:  # accepts (the kernel does), never speaks TLS
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            port = silent.getsockname()[1]
            result = run_client(self.ids, port, "--timeout", "1")
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertOneLineError(result.stderr, "did not complete a TLS handshake",
                                f"localhost:{port}")


class OwnFiles(ClientTestCase):
    """Problems with our own files exit 2 before any connection, and name the file."""

    @classmethod
    def setUpClass(cls):
        scope = class_scope(cls)
        cls.ids = make_identities(scope)
        cls.other = make_identities(scope)
        cls.url = f"https://localhost:{free_port()}/"  # never dialled: the files fail first

    def assertMissingFileReported(self, flag: str) -> None:
        missing = str(self.ids.project / "nowhere" / f"{flag.strip('-')}.pem")
        code, out, err = call_main([*self.ids.client_args(), flag, missing, self.url])
        self.assertEqual(code, 2, err)
        self.assertEqual(out, "")
        self.assertOneLineError(err, missing, "run ./bootstrap.sh")

    def test_missing_cacert_exits_2_naming_it(self):
        self.assertMissingFileReported("--cacert")

    def test_missing_cert_exits_2_naming_it(self):
        self.assertMissingFileReported("--cert")

    def test_missing_key_exits_2_naming_it(self):
        self.assertMissingFileReported("--key")

    def test_missing_file_as_a_user_runs_it(self):
        missing = str(self.ids.project / "nowhere.pem")
        result = run_client(self.ids, free_port(), "--key", missing)
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertOneLineError(result.stderr, missing, "run ./bootstrap.sh")

    def test_key_of_another_identity_exits_2(self):
        result = run_client(self.ids, free_port(), "--key", str(self.other.client_key))
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(result.stdout, "")
        self.assertOneLineError(result.stderr, "cannot load our identity",
                                str(self.ids.client_cert), str(self.other.client_key),
                                "belong together")

    def test_cacert_without_a_certificate_exits_2_naming_it(self):
        not_a_cert = self.ids.project / "empty.pem"
        not_a_cert.write_text("")
        code, out, err = call_main([*self.ids.client_args(), "--cacert", str(not_a_cert), self.url])
        self.assertEqual(code, 2, err)
        self.assertOneLineError(err, str(not_a_cert))
        self.assertNotIn("belong together", err)  # it is not our cert/key pair that is wrong


class CommandLine(ClientTestCase):
    """Malformed command lines are argparse errors: usage, exit 2, before any file or socket."""

    @classmethod
    def setUpClass(cls):
        cls.ids = make_identities(class_scope(cls))  # valid files, so only the flag under test is wrong

    def assertUsageError(self, *argv: str, phrase: str) -> None:
        code, out, err = call_main([*self.ids.client_args(), *argv])
        self.assertEqual(code, 2, err)
        self.assertEqual(out, "")
        self.assertIn("usage:", err)
        self.assertIn(phrase, err)
        self.assertNotIn("Traceback", err)

    def test_http_url_is_a_usage_error(self):
        self.assertUsageError("http://localhost:4443/", phrase="URL must look like https://")

    def test_url_without_host_is_a_usage_error(self):
        self.assertUsageError("https:///", phrase="URL must look like https://")

    def test_non_numeric_port_is_a_usage_error(self):
        self.assertUsageError("https://localhost:abc/", phrase="port")

    def test_out_of_range_port_is_a_usage_error(self):
        self.assertUsageError("https://localhost:99999/", phrase="port")

    def test_port_zero_is_a_usage_error(self):
        # urlsplit reads :0 as port 0, which `port or 443` would silently turn into 443.
        self.assertUsageError("https://localhost:0/", phrase="port")

    def test_zero_timeout_is_a_usage_error(self):
        self.assertUsageError("--timeout", "0", "https://localhost:4443/", phrase="--timeout")

    def test_negative_timeout_is_a_usage_error(self):
        self.assertUsageError("--timeout", "-1", "https://localhost:4443/", phrase="--timeout")

    def test_bad_url_as_a_user_runs_it(self):
        result = run([sys.executable, "-W", "error", str(CLIENT), "http://localhost:4443/"])
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertIn("URL must look like https://", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_https_url_is_accepted(self):
        # Twin of the usage errors: a well-formed URL gets past argparse to the file checks.
        code, out, err = call_main([*self.ids.client_args(), "--cacert", "/nonexistent/ca.pem",
                                    "https://localhost:4443/"])
        self.assertEqual(code, 2, err)
        self.assertNotIn("usage:", err)
        self.assertIn("/nonexistent/ca.pem", err)


if __name__ == "__main__":
    unittest.main()
