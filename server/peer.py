"""The verified identity of the client on one connection, read once from its certificate."""

import ssl
import time

from trust import fingerprint


def subject_cn(cert: dict) -> str:
    """The commonName of a certificate as returned by SSLSocket.getpeercert()."""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return "?"


def iso_utc(openssl_time: str) -> str:
    """'Dec  4 21:11:00 2027 GMT' (as getpeercert() gives it) as ISO 8601 UTC."""
    seconds = ssl.cert_time_to_seconds(openssl_time)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Peer:
    """Who is calling: subject CN, certificate fingerprint and expiry, and the TLS parameters."""

    __slots__ = ("cn", "fingerprint", "tls_version", "cipher", "_not_after")

    def __init__(self, tls: ssl.SSLObject, der: bytes):
        cert = tls.getpeercert()
        self.cn = subject_cn(cert)
        self.fingerprint = fingerprint(der)
        self.tls_version = tls.version()
        self.cipher = tls.cipher()[0]
        self._not_after = cert["notAfter"]

    @property
    def not_after(self) -> str:
        # Parsed on demand: strptime costs ~100 µs, more than the rest of a request.
        return iso_utc(self._not_after)
