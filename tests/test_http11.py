"""The small HTTP/1.1 layer: parsing rules as pure functions, then the same rules on the wire."""

import re
import socket
import ssl
import sys
import unittest

from tests.harness import ROOT, make_identities, start_server

sys.path.insert(0, str(ROOT / "server"))  # the server's modules import each other top-level
import http11  # noqa: E402


def parse(raw: bytes):
    buffer = bytearray(raw)
    return http11.parse_head(http11.split_head(buffer)), buffer


class ParsesRequests(unittest.TestCase):

    def test_http_1_1_keeps_the_connection_alive_by_default(self):
        request, rest = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next")
        self.assertEqual((request.method, request.target, request.keep_alive), ("GET", "/", True))
        self.assertEqual(rest, bytearray(b"GET /next"))  # a pipelined request stays buffered

    def test_connection_close_and_http_1_0_end_the_connection(self):
        self.assertFalse(parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")[0].keep_alive)
        self.assertFalse(parse(b"GET / HTTP/1.0\r\n\r\n")[0].keep_alive)
        self.assertTrue(parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")[0].keep_alive)

    def test_incomplete_head_waits_for_more_bytes(self):
        buffer = bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n")
        self.assertIsNone(http11.split_head(buffer))
        self.assertEqual(buffer, bytearray(b"GET / HTTP/1.1\r\nHost: x\r\n"))  # untouched

    def test_oversized_head_is_refused(self):
        buffer = bytearray(b"GET /" + b"a" * (http11.MAX_HEAD_BYTES + 1))
        with self.assertRaises(http11.BadRequest) as caught:
            http11.split_head(buffer)
        self.assertEqual(caught.exception.status, 431)

    def test_malformed_requests_are_refused_with_their_status(self):
        cases = {b"GET /\r\n\r\n": 400, b"GET / HTTP/2.0\r\n\r\n": 505,
                 b"GET / HTTP/1.1\r\nno colon\r\n\r\n": 400,
                 b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n": 501,
                 b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n": 400,
                 b"GET / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n": 413,
                 b"\xff\xfe / HTTP/1.1\r\n\r\n": 400}
        for raw, status in cases.items():
            with self.subTest(raw=raw):
                with self.assertRaises(http11.BadRequest) as caught:
                    parse(raw)
                self.assertEqual(caught.exception.status, status)

    def test_oversized_head_is_refused_even_when_it_arrives_whole(self):
        buffer = bytearray(b"GET / HTTP/1.1\r\nX: " + b"a" * http11.MAX_HEAD_BYTES + b"\r\n\r\n")
        with self.assertRaises(http11.BadRequest) as caught:
            http11.split_head(buffer)
        self.assertEqual(caught.exception.status, 431)

    def test_ambiguous_lengths_and_log_forging_are_refused(self):
        cases = [b"GET / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
                 b"GET / HTTP/1.1\r\nContent-Length: 0_5\r\n\r\n",
                 b"GET / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\n",
                 b"GET /x\x1b[31m HTTP/1.1\r\n\r\n", b"GET /\x00 HTTP/1.1\r\n\r\n"]
        for raw in cases:
            with self.subTest(raw=raw):
                with self.assertRaises(http11.BadRequest) as caught:
                    parse(raw)
                self.assertEqual(caught.exception.status, 400)
        same_twice = b"GET / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n"
        self.assertEqual(parse(same_twice)[0].body_length, 3)

    def test_bare_lf_lines_are_refused_at_once(self):
        with self.assertRaises(http11.BadRequest) as caught:
            http11.split_head(bytearray(b"GET / HTTP/1.1\nHost: x\n\n"))
        self.assertEqual(caught.exception.status, 400)

    def test_connection_header_is_a_list_of_tokens(self):
        self.assertFalse(parse(b"GET / HTTP/1.1\r\nConnection: close, TE\r\n\r\n")[0].keep_alive)
        self.assertTrue(parse(b"GET / HTTP/1.1\r\nConnection: TE\r\n\r\n")[0].keep_alive)

    def test_response_is_one_buffer_with_length_and_close(self):
        raw = http11.response(200, "text/plain", b"Hello world!", keep_alive=False)
        head, _, body = raw.partition(b"\r\n\r\n")
        self.assertEqual(body, b"Hello world!")
        self.assertIn(b"Content-Length: 12", head)
        self.assertIn(b"Connection: close", head)
        self.assertNotIn(b"Hello", http11.response(200, "text/plain", b"Hello", True, send_body=False))


class SpeaksHttpOnTheWire(unittest.TestCase):
    """What a raw client sees on one verified connection."""

    @classmethod
    def setUpClass(cls):
        cls.ids = make_identities(cls)
        cls.server = start_server(cls, cls.ids)

    def exchange(self, raw: bytes) -> bytes:
        """Send raw bytes on one mTLS connection; return everything until the server closes."""
        context = ssl.create_default_context(cafile=str(self.ids.cacert))
        context.load_cert_chain(self.ids.client_cert, self.ids.client_key)
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as plain:
            with context.wrap_socket(plain, server_hostname="localhost") as tls:
                tls.sendall(raw)
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
        return answer

    def test_pipelined_requests_are_answered_in_order(self):
        answer = self.exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
                               b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        self.assertEqual(re.findall(rb"HTTP/1\.1 (\d{3}) ", answer), [b"200", b"404", b"200"])
        self.assertEqual(answer.count(b"Hello world!"), 1)  # HEAD has no body
        self.assertTrue(answer.endswith(b"Connection: close\r\n\r\n"), answer[-80:])

    def test_bad_request_gets_its_status_and_the_connection_closes(self):
        answer = self.exchange(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.assertTrue(answer.startswith(b"HTTP/1.1 501 "), answer[:60])
        self.assertIn(b"Connection: close", answer)

    def test_request_then_close_notify_still_gets_its_answer(self):
        # TLS 1.3 half-close: the client sends a request and its close_notify in one go.
        context = ssl.create_default_context(cafile=str(self.ids.cacert))
        context.load_cert_chain(self.ids.client_cert, self.ids.client_key)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_hostname="localhost")
        with socket.create_connection(("127.0.0.1", self.server.port), timeout=10) as plain:
            while True:
                try:
                    tls.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    plain.sendall(outgoing.read())
                    incoming.write(plain.recv(65536))
            tls.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            with self.assertRaises(ssl.SSLWantReadError):
                tls.unwrap()  # queues our close_notify behind the request
            plain.sendall(outgoing.read())
            while chunk := plain.recv(65536):
                incoming.write(chunk)
        answer = b""
        try:
            while data := tls.read(65536):
                answer += data
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            pass
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 OK"), answer)
        self.assertTrue(answer.endswith(b"Hello world!"), answer)

    def test_request_body_is_read_and_ignored(self):
        answer = self.exchange(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                               b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        self.assertEqual(re.findall(rb"HTTP/1\.1 (\d{3}) ", answer), [b"200", b"200"], answer)


if __name__ == "__main__":
    unittest.main()
