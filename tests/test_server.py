"""The server against real peers: curl, openssl s_client, gnutls-cli, raw sockets, signals."""

import http.client
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import unittest

from tests.harness import (WEBSERVER, ServerProcess, curl, install_code, make_identities,
                           raw_connection, require_tool, run, start_project_server, start_server,
                           stream_peer)

REQUEST_AND_CLOSE = b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"


def client_tls(ids) -> ssl.SSLContext:
    """A verifying client context with the test client identity, for raw-protocol tests."""
    context = ssl.create_default_context(cafile=str(ids.cacert))
    context.load_cert_chain(ids.client_cert, ids.client_key)
    return context


class ServesMutuallyAuthenticatedClients(unittest.TestCase):
    """One server for the class: every real client with the right identity gets Hello world!."""

    @classmethod
    def setUpClass(cls):
        cls.ids = make_identities(cls)
        cls.server = start_server(cls, cls.ids)
        cls.port = cls.server.port

    def test_curl_gets_hello_world(self):
        result = curl(self, self.ids, self.port)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout, "Hello world!")

    def test_curl_head_gets_headers_without_body(self):
        result = curl(self, self.ids, self.port, "--head")
        self.assertEqual(result.returncode, 0, result.stderr)
        headers = result.stdout.lower()
        self.assertTrue(headers.startswith("http/1.1 200 ok"), result.stdout)
        self.assertIn("content-type: text/plain", headers)
        self.assertIn("content-length: 12", headers)
        self.assertNotIn("hello world", headers)

    def test_request_is_logged_with_client_subject(self):
        result = curl(self, self.ids, self.port, path="/?logged-request")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.server.wait_for_log(r'CN=client "GET /\?logged-request HTTP/1.1" 200')

    def test_openssl_s_client_gets_hello_world_and_close_notify(self):
        openssl = require_tool(self, "openssl")
        result = stream_peer([openssl, "s_client", "-connect", f"127.0.0.1:{self.port}",
                              "-servername", "localhost", "-verify_return_error",
                              "-CAfile", str(self.ids.cacert), "-cert", str(self.ids.client_cert),
                              "-key", str(self.ids.client_key), "-ign_eof"], REQUEST_AND_CLOSE)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("Hello world!", result.stdout)
        self.assertIn("Verify return code: 0 (ok)", result.stdout)
        self.assertNotIn("unexpected eof", result.stdout + result.stderr)

    def test_gnutls_cli_gets_hello_world_and_close_notify(self):
        gnutls = require_tool(self, "gnutls-cli")
        result = stream_peer([gnutls, "-p", str(self.port), "--x509cafile", str(self.ids.cacert),
                              "--x509certfile", str(self.ids.client_cert),
                              "--x509keyfile", str(self.ids.client_key), "localhost"],
                             REQUEST_AND_CLOSE)
        output = result.stdout + result.stderr
        self.assertEqual(result.returncode, 0, output)
        self.assertIn("Hello world!", result.stdout)
        self.assertIn("Peer has closed the GnuTLS connection", output)
        self.assertNotIn("non-properly terminated", output)

    def test_keep_alive_serves_several_requests_on_one_connection(self):
        conn = http.client.HTTPSConnection("localhost", self.port, context=client_tls(self.ids),
                                           timeout=10)
        self.addCleanup(conn.close)
        conn.connect()
        first_socket = conn.sock
        for _ in range(3):
            conn.request("GET", "/")
            response = conn.getresponse()
            self.assertEqual((response.status, response.read()), (200, b"Hello world!"))
            self.assertIs(conn.sock, first_socket, "the server closed a keep-alive connection")
        local_port = first_socket.getsockname()[1]
        self.server.wait_for_log(rf"127\.0\.0\.1:{local_port} CN=client")
        served = [line for line in self.server.log if f"127.0.0.1:{local_port} CN=client" in line]
        self.assertEqual(len(served), 3)

    def test_unknown_paths_are_404(self):
        for path in ("/nope", "/server-key.pem", "/webserver.py", "/../server/server-key.pem",
                     "//etc/passwd", "/%2e%2e/server-key.pem"):
            with self.subTest(path=path):
                result = curl(self, self.ids, self.port, "--path-as-is", "--write-out",
                              "%{http_code}", path=path)
                self.assertEqual(result.returncode, 0, result.stderr)
                self.assertTrue(result.stdout.endswith("404"), result.stdout)
                self.assertNotIn("PRIVATE KEY", result.stdout)
                self.assertNotIn("import", result.stdout)

    def test_other_methods_are_not_implemented(self):
        result = curl(self, self.ids, self.port, "-X", "POST", "--data", "x", "--write-out",
                      "%{http_code}")
        self.assertTrue(result.stdout.endswith("501"), result.stdout)


class RefusesClientsItDoesNotTrust(unittest.TestCase):
    """No certificate or an impostor (same CN, other key) is refused under TLS 1.2 and 1.3, and
    the refused client receives the alert saying why, not a reset."""

    EXPECTED = {
        # (TLS version, case): what curl (OpenSSL) prints for the alert it received
        ("1.2", "no certificate"): "alert handshake failure",
        ("1.3", "no certificate"): "alert certificate required",
        ("1.2", "impostor"): "alert unknown ca",
        ("1.3", "impostor"): "alert unknown ca",
    }
    LOGGED = {"no certificate": "handshake failed: no client certificate",
              "impostor": "handshake failed: client certificate not trusted"}

    @classmethod
    def setUpClass(cls):
        cls.ids = make_identities(cls)
        cls.impostor = make_identities(cls)  # a second bootstrap: same CN=client, different key
        cls.server = start_server(cls, cls.ids)

    def curl_as(self, case: str, version: str) -> subprocess.CompletedProcess:
        versions = (f"--tlsv{version}", "--tls-max", version)
        if case == "no certificate":
            return curl(self, self.ids, self.server.port, *versions, with_cert=False)
        return curl(self, self.ids, self.server.port, *versions, "--cert",
                    str(self.impostor.client_cert), "--key", str(self.impostor.client_key),
                    with_cert=False)

    def test_refused_client_receives_the_alert_saying_why(self):
        for (version, case), alert in self.EXPECTED.items():
            with self.subTest(tls=version, case=case):
                result = self.curl_as(case, version)
                self.assertNotEqual(result.returncode, 0)
                self.assertNotIn("Hello world!", result.stdout)
                self.assertIn(alert, result.stderr)
                for destroyed in ("reset", "getpeername", "unexpected eof"):
                    self.assertNotIn(destroyed, result.stderr.lower())

    def test_each_refusal_is_one_log_line_with_its_reason(self):
        for case, logged in self.LOGGED.items():
            with self.subTest(case=case):
                before = sum(logged in line for line in self.server.log)
                self.curl_as(case, "1.3")
                self.server.wait_for_log(logged)
                after = sum(logged in line for line in self.server.log)
                self.assertEqual(after, before + 1)

    def test_same_curl_with_the_right_identity_succeeds(self):
        # The twin of the refusals above: the flags are right, only the identity differed.
        for version in ("1.2", "1.3"):
            with self.subTest(tls=version):
                result = curl(self, self.ids, self.server.port, f"--tlsv{version}",
                              "--tls-max", version)
                self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"),
                                 result.stderr)

    def test_tls_1_1_is_refused(self):
        # OpenSSL 3 curl offers TLS 1.1 only at security level 0; without that this proves nothing.
        result = curl(self, self.ids, self.server.port, "--tlsv1.1", "--tls-max", "1.1",
                      "--ciphers", "DEFAULT@SECLEVEL=0")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("alert protocol version", result.stderr)
        self.server.wait_for_log("older than 1.2")

    def test_tls_1_1_client_flags_do_reach_the_server(self):
        # Twin of test_tls_1_1_is_refused: the same flags, allowed up to TLS 1.2, succeed.
        result = curl(self, self.ids, self.server.port, "--tlsv1.1", "--tls-max", "1.2",
                      "--ciphers", "DEFAULT@SECLEVEL=0")
        self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)

    def test_openssl_s_client_offering_only_tls_1_1_is_refused(self):
        openssl = require_tool(self, "openssl")
        result = stream_peer([openssl, "s_client", "-connect", f"127.0.0.1:{self.server.port}",
                              "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0",
                              "-CAfile", str(self.ids.cacert), "-cert", str(self.ids.client_cert),
                              "-key", str(self.ids.client_key)], REQUEST_AND_CLOSE)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("alert protocol version", result.stdout + result.stderr)


class SurvivesBadPeers(unittest.TestCase):
    """Silent, garbage and plain-HTTP peers neither stall nor kill the server."""

    @classmethod
    def setUpClass(cls):
        cls.ids = make_identities(cls)
        cls.server = start_server(cls, cls.ids, "--handshake-timeout", "2")

    def assert_still_serving(self):
        result = curl(self, self.ids, self.server.port)
        self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)

    def test_silent_tcp_clients_do_not_block_a_real_one(self):
        silent = [raw_connection(self.server.port) for _ in range(5)]
        try:
            # curl's own limit is below the handshake timeout: it can only pass if the silent
            # connections are not holding up the accept loop.
            result = curl(self, self.ids, self.server.port, "--max-time", "1.5")
            self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)
        finally:
            for sock in silent:
                sock.close()

    def test_silent_tcp_client_is_dropped_after_the_handshake_timeout(self):
        with raw_connection(self.server.port, timeout=8) as sock:
            self.assertEqual(sock.recv(1024), b"")  # server closed it (timeout 2 s < 8 s)
        self.server.wait_for_log("handshake failed: timed out")

    def test_plain_http_gets_a_readable_400(self):
        with raw_connection(self.server.port) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer)
        self.assertIn(b"HTTPS", answer)
        self.assertIn(b"client certificate", answer)
        self.assert_still_serving()

    def test_garbage_bytes_do_not_kill_the_server(self):
        rng = random.Random(1234)
        payloads = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600)))
                    for _ in range(20)]
        payloads += [b"\x16\x03\x01\x00\x05hello", b"\x16\x03\x03\xff\xff" + b"\0" * 100,
                     b"\x00" * 64, b"\x80\x2e\x01\x03\x01"]
        for payload in payloads:
            with raw_connection(self.server.port) as sock:
                try:
                    sock.sendall(payload)
                    sock.shutdown(socket.SHUT_WR)
                    while sock.recv(4096):
                        pass
                except OSError:
                    pass  # a reset is an acceptable answer to garbage; the server must live on
        self.assert_still_serving()
        self.assertNotIn("Traceback", self.server.output())


class RunsTheWayUsersRunIt(unittest.TestCase):
    """`cd server && python3 webserver.py`, signals, and the one-line errors a user can cause."""

    def test_cd_server_and_run_uses_the_files_next_to_the_script(self):
        ids = make_identities(self)
        server = start_project_server(self, ids)
        result = curl(self, ids, server.port)
        self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)

    def test_sigterm_and_sigint_stop_it_cleanly(self):
        ids = make_identities(self)
        for signum in (signal.SIGTERM, signal.SIGINT):
            with self.subTest(signal=signum.name):
                server = ServerProcess(ids.server_args())
                self.assertEqual(curl(self, ids, server.port).stdout, "Hello world!")
                code = server.stop(signum, timeout=5)
                self.assertEqual(code, 0, server.output())
                self.assertNotIn("Traceback", server.output())
                self.assertIn("stopped", server.output())

    def test_missing_default_files_name_the_file_and_bootstrap(self):
        ids = make_identities(self)
        install_code(ids)
        for name in ("server-cert.pem", "server-key.pem", "client-cert.pem"):
            with self.subTest(missing=name):
                target = ids.project / "server" / name
                hidden = target.rename(target.with_suffix(".hidden"))
                try:
                    result = run([sys.executable, "webserver.py", "--port", "0"], timeout=10,
                                 cwd=ids.project / "server")
                finally:
                    hidden.rename(target)
                self.assertEqual(result.returncode, 2)
                self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
                self.assertIn(name, result.stderr)
                self.assertIn("./bootstrap.sh", result.stderr)

    def test_missing_files_given_as_flags_are_named(self):
        ids = make_identities(self)
        for flag, attribute in (("--tls-cert", "server_cert"), ("--tls-key", "server_key"),
                                ("--tls-client-certs", "trusted")):
            with self.subTest(flag=flag):
                missing = ids.project / "missing" / f"{attribute}.pem"
                args = ids.server_args()
                args[args.index(flag) + 1] = str(missing)
                result = run([sys.executable, str(WEBSERVER), "--port", "0", *args], timeout=10)
                self.assertEqual(result.returncode, 2)
                self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
                self.assertIn(str(missing), result.stderr)
                self.assertIn("check the path", result.stderr)

    def test_values_that_would_stop_serving_are_usage_errors(self):
        ids = make_identities(self)
        for bad in (["--port", "70000"], ["--max-connections", "0"], ["--session-tickets", "-1"],
                    ["--handshake-timeout", "0"], ["--idle-timeout", "-5"]):
            with self.subTest(args=bad):
                result = run([sys.executable, str(WEBSERVER), *ids.server_args(), *bad], timeout=10)
                self.assertEqual(result.returncode, 2)
                self.assertIn(bad[0], result.stderr)
                self.assertNotIn("Traceback", result.stderr)

    def test_keeps_serving_when_its_log_reader_goes_away(self):
        # e.g. `webserver.py | tee log` and tee is killed: writes to stderr now fail (EPIPE).
        ids = make_identities(self)
        proc = subprocess.Popen([sys.executable, str(WEBSERVER), "--port", "0", *ids.server_args()],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        self.addCleanup(proc.wait, 10)
        self.addCleanup(proc.kill)
        port = int(re.search(r":(\d+)/ \(pid", proc.stderr.readline()).group(1))
        proc.stderr.close()  # the reader is gone
        for attempt in range(3):
            with self.subTest(request=attempt):
                result = curl(self, ids, port, "--max-time", "5")
                self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"),
                                 result.stderr)
                time.sleep(0.3)  # past a log flush, which now fails

    def test_port_in_use_is_one_clear_line(self):
        ids = make_identities(self)
        with socket.socket() as holder:
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            port = holder.getsockname()[1]
            result = run([sys.executable, str(WEBSERVER), *ids.server_args(), "--port", str(port)],
                         timeout=10)
        self.assertEqual(result.returncode, 2)
        self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
        self.assertIn(f"127.0.0.1:{port}", result.stderr)
        self.assertIn("in use", result.stderr)

    def test_trusts_every_certificate_of_a_bundle(self):
        ids = make_identities(self)
        second = make_identities(self)
        bundle = ids.project / "bundle.pem"
        bundle.write_text(ids.trusted.read_text() + second.trusted.read_text())
        server = start_server(self, ids, "--tls-client-certs", str(bundle))
        for who in (ids, second):
            result = curl(self, ids, server.port, "--cert", str(who.client_cert),
                          "--key", str(who.client_key), with_cert=False)
            self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)


if __name__ == "__main__":
    unittest.main()
