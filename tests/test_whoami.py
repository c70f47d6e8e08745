"""`/whoami` content negotiation: JSON by default, an escaped self-contained HTML page for browsers."""

import json
import sys
import unittest
from types import SimpleNamespace

from tests.harness import ROOT, curl, make_identities, start_server

sys.path.insert(0, str(ROOT / "server"))  # whoami.py imports peer as a top-level module
import whoami  # noqa: E402

CHROMIUM_ACCEPT = ("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
                   "image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7")
FIREFOX_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
FINGERPRINT = "0123456789abcdef" * 4


def fake_peer(**overrides) -> SimpleNamespace:
    """What peer.Peer carries, without a connection."""
    fields = dict(cn="alice", fingerprint=FINGERPRINT, not_after="2027-12-04T21:11:00Z",
                  tls_version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384")
    fields.update(overrides)
    return SimpleNamespace(**fields)


class AcceptNegotiation(unittest.TestCase):

    def content_type(self, accept: str) -> str:
        return whoami.whoami_response(fake_peer(), accept)[1]

    def test_browsers_get_html(self):
        for name, accept in (("chromium", CHROMIUM_ACCEPT), ("firefox", FIREFOX_ACCEPT)):
            with self.subTest(browser=name):
                self.assertEqual(self.content_type(accept), "text/html; charset=utf-8")

    def test_curl_and_absent_accept_get_json(self):
        for accept in ("*/*", "", "   "):
            with self.subTest(accept=accept):
                self.assertEqual(self.content_type(accept), "application/json")

    def test_json_asked_for_gets_json(self):
        for accept in ("application/json", "application/json, text/html;q=0.5",
                       "application/*", "text/html;q=0.5, */*"):
            with self.subTest(accept=accept):
                self.assertEqual(self.content_type(accept), "application/json")

    def test_html_asked_for_gets_html(self):
        for accept in ("text/html", "TEXT/HTML", "text/*", "text/html; charset=utf-8",
                       "application/json;q=0.5, text/html", "text/html;q=0.9, */*;q=0.1"):
            with self.subTest(accept=accept):
                self.assertEqual(self.content_type(accept), "text/html; charset=utf-8")

    def test_tie_between_html_and_json_gets_json(self):
        for accept in ("text/html, application/json", "application/json;q=0.5, text/html;q=0.5"):
            with self.subTest(accept=accept):
                self.assertEqual(self.content_type(accept), "application/json")

    def test_most_specific_range_decides_the_q(self):
        # text/html is refused explicitly even though text/* is welcome.
        self.assertEqual(self.content_type("text/*, text/html;q=0"), "application/json")
        self.assertEqual(whoami.quality("text/html", whoami.parse_accept("text/*;q=0.3, */*")), 0.3)

    def test_malformed_ranges_and_qvalues_are_ignored(self):
        for accept in ("text/html;q=2", "text/html;q=abc", "text/html;q=0.1234", "html",
                       "*/html", ",,;", "text/html;q="):
            with self.subTest(accept=accept):
                self.assertEqual(self.content_type(accept), "application/json")

    def test_json_body_is_unchanged(self):
        status, _, body = whoami.whoami_response(fake_peer(), "*/*")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {
            "cn": "alice", "fingerprint_sha256": FINGERPRINT, "not_after": "2027-12-04T21:11:00Z",
            "tls_version": "TLSv1.3", "cipher": "TLS_AES_256_GCM_SHA384"})


class HtmlPage(unittest.TestCase):

    def page(self, **overrides) -> str:
        status, _, body = whoami.whoami_response(fake_peer(**overrides), "text/html")
        self.assertEqual(status, 200)
        return body.decode("utf-8")

    def test_page_shows_every_field_and_names_the_client_in_the_title(self):
        page = self.page().replace("<wbr>", "")  # the fingerprint may wrap only after a colon
        self.assertIn("<title>You are alice</title>", page)
        colon = ":".join(FINGERPRINT[i:i + 2] for i in range(0, 64, 2)).upper()
        for value in ("alice", colon, "2027-12-04T21:11:00Z", "TLSv1.3", "TLS_AES_256_GCM_SHA384"):
            with self.subTest(value=value):
                self.assertIn(value, page)

    def test_page_is_self_contained(self):
        page = self.page()
        self.assertNotRegex(page, r"(?i)<(script|link|img|iframe)\b|\bsrc=|url\(|@import|https?://")
        self.assertIn("default-src 'none'", page)

    def test_every_value_is_html_escaped(self):
        hostile = '<script>alert("x")</script>&\''
        page = self.page(cn=hostile, fingerprint=hostile, not_after=hostile, tls_version=hostile,
                         cipher=hostile)
        self.assertNotIn("<script>", page)
        escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#x27;"
        self.assertIn(f"<title>You are {escaped}</title>", page)
        self.assertEqual(page.count(escaped), 7)  # title, heading, CN and the four other fields

    def test_fingerprint_that_is_not_hex_is_shown_escaped_not_reformatted(self):
        page = self.page(fingerprint="a<b")
        self.assertIn('<dd id="fingerprint">a&lt;b</dd>', page)


class WhoamiOverTheWire(unittest.TestCase):

    def setUp(self):
        self.ids = make_identities(self)
        self.server = start_server(self, self.ids)

    def test_curl_asking_for_html_gets_the_page(self):
        result = curl(self, self.ids, self.server.port, "-H", "Accept: text/html", "-i",
                      path="/whoami")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r"(?im)^content-type: text/html; charset=utf-8$")
        self.assertIn("<title>You are client</title>", result.stdout)

    def test_curl_by_default_still_gets_json(self):
        result = curl(self, self.ids, self.server.port, path="/whoami")
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(json.loads(result.stdout)["cn"], "client")


if __name__ == "__main__":
    unittest.main()
