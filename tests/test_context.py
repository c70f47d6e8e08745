"""The two pure functions that hold the whole security policy: server_context and client_context.

No sockets: each test reads one setting off the SSLContext built from real bootstrap.sh identities.
"""

import ssl
import sys
import unittest

from tests.harness import ROOT, class_scope, load_client_module, make_identities

sys.path.insert(0, str(ROOT / "server"))  # webserver.py imports its sibling modules (engine, trust...) as top-level modules
import webserver  # noqa: E402
from trust import TrustError, load_trusted_set  # noqa: E402


client = load_client_module()


def handshake(server: ssl.SSLContext, client_side: ssl.SSLContext,
              server_hostname: str = "localhost") -> None:
    """A full TLS handshake between two contexts through memory BIOs (no sockets); raises on refusal.

    get_ca_certs() lists only CA:TRUE certificates, and bootstrap.sh's are CA:FALSE leaves, so
    which certificate a context trusts is shown by whom it accepts.
    """
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    peers = [client_side.wrap_bio(c_in, c_out, server_hostname=server_hostname),
             server.wrap_bio(s_in, s_out, server_side=True)]
    done = set()
    for _ in range(10):
        for peer in peers:
            if peer not in done:
                try:
                    peer.do_handshake()
                    done.add(peer)
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if len(done) == 2:
            return
    raise AssertionError("handshake did not finish")


class ServerContext(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        scope = class_scope(cls)
        cls.ids = make_identities(scope)
        cls.other = make_identities(scope)
        cls.context = webserver.server_context(cls.ids.server_cert, cls.ids.server_key,
                                               load_trusted_set([cls.ids.trusted]))

    def test_is_a_server_context(self):
        self.assertEqual(self.context.protocol, ssl.PROTOCOL_TLS_SERVER)

    def test_requires_a_client_certificate(self):
        self.assertEqual(self.context.verify_mode, ssl.CERT_REQUIRED)

    def test_refuses_tls_older_than_1_2(self):
        self.assertEqual(self.context.minimum_version, ssl.TLSVersion.TLSv1_2)

    def test_allows_tls_1_3(self):
        self.assertIn(self.context.maximum_version,
                      (ssl.TLSVersion.MAXIMUM_SUPPORTED, ssl.TLSVersion.TLSv1_3))

    def test_disables_compression(self):
        self.assertTrue(self.context.options & ssl.OP_NO_COMPRESSION)

    def test_disables_renegotiation(self):
        self.assertTrue(self.context.options & ssl.OP_NO_RENEGOTIATION)

    def test_verifies_strictly(self):
        self.assertTrue(self.context.verify_flags & ssl.VERIFY_X509_STRICT)

    def test_tls_1_2_suites_are_ecdhe_with_aead_only(self):
        suites = [c for c in self.context.get_ciphers() if c["protocol"] == "TLSv1.2"]
        self.assertTrue(suites)
        for suite in suites:
            with self.subTest(suite=suite["name"]):
                self.assertEqual(suite["kea"], "kx-ecdhe")
                self.assertTrue(suite["aead"])
                self.assertRegex(suite["name"], r"^ECDHE-(ECDSA|RSA)-(AES\d+-GCM|CHACHA20-POLY1305)")

    def client_side(self, ids) -> ssl.SSLContext:
        return client.client_context(self.ids.cacert, ids.client_cert, ids.client_key)

    def test_accepts_the_given_client_certificate(self):
        handshake(self.context, self.client_side(self.ids))

    def test_refuses_another_client_certificate_with_the_same_cn(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            handshake(self.context, self.client_side(self.other))

    def test_trust_store_holds_only_the_given_certificate(self):
        self.assertEqual(self.context.cert_store_stats(), {"crl": 0, "x509_ca": 0, "x509": 1})

    def test_trust_store_holds_every_certificate_of_a_bundle(self):
        bundle = self.ids.project / "bundle.pem"
        bundle.write_text(self.ids.trusted.read_text() + self.other.client_cert.read_text())
        context = webserver.server_context(self.ids.server_cert, self.ids.server_key,
                                           load_trusted_set([bundle]))
        self.assertEqual(context.cert_store_stats()["x509"], 2)
        handshake(context, self.client_side(self.other))

    def test_refuses_a_key_that_does_not_match_the_certificate(self):
        with self.assertRaises(ssl.SSLError):
            webserver.server_context(self.ids.server_cert, self.other.server_key,
                                     load_trusted_set([self.ids.trusted]))

    def test_refuses_an_empty_trusted_set(self):
        empty = self.ids.project / "empty.pem"
        empty.write_text("")
        with self.assertRaises(TrustError):
            load_trusted_set([empty])


class ClientContext(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        scope = class_scope(cls)
        cls.ids = make_identities(scope)
        cls.other = make_identities(scope)
        cls.context = client.client_context(cls.ids.cacert, cls.ids.client_cert, cls.ids.client_key)

    def test_is_a_client_context(self):
        self.assertEqual(self.context.protocol, ssl.PROTOCOL_TLS_CLIENT)

    def test_verifies_the_server_certificate(self):
        self.assertEqual(self.context.verify_mode, ssl.CERT_REQUIRED)

    def test_checks_the_host_name(self):
        self.assertTrue(self.context.check_hostname)

    def test_refuses_tls_older_than_1_2(self):
        self.assertEqual(self.context.minimum_version, ssl.TLSVersion.TLSv1_2)

    def test_verifies_strictly(self):
        self.assertTrue(self.context.verify_flags & ssl.VERIFY_X509_STRICT)

    def server_side(self, ids) -> ssl.SSLContext:
        return webserver.server_context(ids.server_cert, ids.server_key,
                                        load_trusted_set([self.ids.trusted]))

    def test_accepts_the_given_server_certificate(self):
        handshake(self.server_side(self.ids), self.context)

    def test_refuses_another_server_certificate_with_the_same_cn(self):
        with self.assertRaises(ssl.SSLCertVerificationError):
            handshake(self.server_side(self.other), self.context)

    def test_refuses_a_host_name_not_in_the_certificate(self):
        with self.assertRaisesRegex(ssl.SSLCertVerificationError, "mismatch"):
            handshake(self.server_side(self.ids), self.context, server_hostname="example.com")

    def test_accepts_every_name_in_the_certificate(self):
        for name in ("localhost", "127.0.0.1", "::1"):
            with self.subTest(name=name):
                handshake(self.server_side(self.ids), self.context, server_hostname=name)

    def test_trust_store_holds_only_the_given_certificate(self):
        # No system CAs: one certificate, and it is not a CA.
        self.assertEqual(self.context.cert_store_stats(), {"crl": 0, "x509_ca": 0, "x509": 1})

    def test_refuses_a_key_that_does_not_match_the_certificate(self):
        with self.assertRaises(ssl.SSLError):
            client.client_context(self.ids.cacert, self.ids.client_cert, self.other.client_key)

    def test_refuses_a_cacert_without_a_certificate(self):
        with self.assertRaises(ssl.SSLError):
            client.client_context(self.ids.client_key, self.ids.client_cert, self.ids.client_key)


if __name__ == "__main__":
    unittest.main()
