"""Many clients, one server: add, use, revoke and reload without a restart; who is calling."""

import hashlib
import http.client
import json
import ssl
import unittest

from tests.harness import (Identities, curl, make_identities, reload_server,
                           run_bootstrap, run_project_client, start_project_server)

P12_PASSWORD = "correct horse battery staple"


def identity_of(ids: Identities, name: str):
    """(cert, key) paths of a named client identity in the project."""
    folder = ids.project / "client" / name
    return folder / "client-cert.pem", folder / "client-key.pem"


def sha256_of_pem(path) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(path.read_text())).hexdigest()


def curl_as(testcase, ids: Identities, port: int, name: str, path: str = "/"):
    cert, key = identity_of(ids, name)
    return curl(testcase, ids, port, "--cert", str(cert), "--key", str(key), with_cert=False,
                path=path)


def keep_alive_connection(testcase, ids: Identities, port: int, name: str) -> http.client.HTTPSConnection:
    cert, key = identity_of(ids, name)
    context = ssl.create_default_context(cafile=str(ids.cacert))
    context.load_cert_chain(cert, key)
    conn = http.client.HTTPSConnection("localhost", port, context=context, timeout=10)
    testcase.addCleanup(conn.close)
    return conn


def get(conn: http.client.HTTPSConnection, path: str = "/"):
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, response.read()


class ManyClientsOneServer(unittest.TestCase):

    def setUp(self):
        self.ids = make_identities(self)
        self.bootstrap("add-client", "alice")
        self.server = start_project_server(self, self.ids)
        self.port = self.server.port

    def bootstrap(self, *args: str, **kwargs):
        result = run_bootstrap(self.ids.project, *args, **kwargs)
        self.assertEqual(result.returncode, 0, result.stderr)
        return result

    def test_default_and_added_client_are_both_served(self):
        for name in ("client", "alice"):
            with self.subTest(client=name):
                cert, key = (self.ids.client_cert, self.ids.client_key) if name == "client" \
                    else identity_of(self.ids, name)
                result = curl(self, self.ids, self.port, "--cert", str(cert), "--key", str(key),
                              with_cert=False)
                self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"),
                                 result.stderr)
        self.server.wait_for_log(r'CN=alice "GET / HTTP/1.1" 200')

    def test_whoami_names_each_client_by_its_certificate(self):
        for name, cert in (("client", self.ids.client_cert),
                           ("alice", identity_of(self.ids, "alice")[0])):
            with self.subTest(client=name):
                result = curl(self, self.ids, self.port, "--cert", str(cert), "--key",
                              str(cert.with_name("client-key.pem")), with_cert=False,
                              path="/whoami")
                self.assertEqual(result.returncode, 0, result.stderr)
                me = json.loads(result.stdout)
                self.assertEqual(me["cn"], name)
                self.assertEqual(me["fingerprint_sha256"], sha256_of_pem(cert))
                self.assertRegex(me["not_after"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
                self.assertEqual(me["tls_version"], "TLSv1.3")
                self.assertTrue(me["cipher"].startswith("TLS_"), me["cipher"])

    def test_new_client_is_trusted_after_reload_without_restart(self):
        self.bootstrap("add-client", "bob")
        refused = curl_as(self, self.ids, self.port, "bob")
        self.assertNotEqual(refused.returncode, 0, "trusted before the reload")
        reload_server(self.server)
        self.server.wait_for_log("reloaded: trusting 3 client certificate")
        result = curl_as(self, self.ids, self.port, "bob")
        self.assertEqual((result.returncode, result.stdout), (0, "Hello world!"), result.stderr)

    def test_revoked_client_is_refused_after_reload_but_open_connection_continues(self):
        conn = keep_alive_connection(self, self.ids, self.port, "alice")
        self.assertEqual(get(conn), (200, b"Hello world!"))
        self.bootstrap("revoke-client", "alice")
        reload_server(self.server)
        self.server.wait_for_log("reloaded: trusting 1 client certificate")
        # The connection authenticated before the revocation keeps working...
        self.assertEqual(get(conn), (200, b"Hello world!"))
        # ...a new connection from the revoked client is refused, with the reason...
        refused = curl_as(self, self.ids, self.port, "alice")
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("alert unknown ca", refused.stderr)
        # ...and everyone else is still served.
        self.assertEqual(curl(self, self.ids, self.port).stdout, "Hello world!")

    def test_default_client_can_be_revoked_too(self):
        self.bootstrap("revoke-client", "client")
        reload_server(self.server)
        self.assertNotEqual(curl(self, self.ids, self.port).returncode, 0)
        self.assertEqual(curl_as(self, self.ids, self.port, "alice").stdout, "Hello world!")

    def test_broken_trusted_file_on_reload_keeps_the_old_configuration(self):
        broken = self.ids.project / "server" / "clients" / "broken.pem"
        broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
        reload_server(self.server)
        line = self.server.wait_for_log("reload failed")
        self.assertIn("broken.pem", line)
        for name in ("client", "alice"):
            with self.subTest(still_served=name):
                cert, key = (self.ids.client_cert, self.ids.client_key) if name == "client" \
                    else identity_of(self.ids, name)
                result = curl(self, self.ids, self.port, "--cert", str(cert), "--key", str(key),
                              with_cert=False)
                self.assertEqual(result.stdout, "Hello world!", result.stderr)

    def test_python_client_uses_a_named_identity(self):
        result = run_project_client(self.ids, self.port, "--identity", "alice", "-v",
                                    path="/whoami")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout)["cn"], "alice")
        self.assertIn("alice", result.stderr)

    def test_python_client_with_unknown_identity_names_the_fix(self):
        result = run_project_client(self.ids, self.port, "--identity", "nobody")
        self.assertEqual(result.returncode, 2)
        self.assertIn("nobody", result.stderr)
        self.assertIn("add-client", result.stderr)
        self.assertNotIn("Traceback", result.stderr)

    def test_p12_bundle_works_with_curl(self):
        self.bootstrap("export-p12", "alice", env={"P12_PASSWORD": P12_PASSWORD})
        bundle = self.ids.project / "client" / "alice.p12"
        result = curl(self, self.ids, self.port, "--cert-type", "P12", "--cert",
                      f"{bundle}:{P12_PASSWORD}", with_cert=False, path="/whoami")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout)["cn"], "alice")

    def test_p12_bundle_with_wrong_password_fails(self):
        self.bootstrap("export-p12", "alice", env={"P12_PASSWORD": P12_PASSWORD})
        bundle = self.ids.project / "client" / "alice.p12"
        result = curl(self, self.ids, self.port, "--cert-type", "P12", "--cert",
                      f"{bundle}:wrong password", with_cert=False)
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Hello world!", result.stdout)


if __name__ == "__main__":
    unittest.main()
