"""The connection engine behind webserver.py: TLS handshakes off the accept loop, clean closes.

Why each piece exists:
- The listening socket stays plain TCP; each connection's handshake runs in its own worker thread
  under a deadline. Wrapping the listening socket (the usual tutorial) handshakes inside accept(),
  where one silent client stalls every other.
- A refused peer must actually receive the alert that says why. Closing a socket whose receive
  buffer still holds unread data makes the kernel send a reset, which destroys the alert in flight,
  so refusals stop sending, drain briefly, then close (`linger_close`).
- Every connection ends with a TLS close_notify (`SSLSocket.unwrap`), so clients can tell a
  complete response from a truncated one.
- After the handshake the peer is pinned by the SHA-256 of its exact certificate (see trust.py).
"""

import logging
import socket
import ssl
import time
from http.server import ThreadingHTTPServer
from typing import Optional, Tuple

from trust import TrustedSet, fingerprint

log = logging.getLogger("mtls")

TLS_HANDSHAKE_RECORD = 0x16
LINGER_SECONDS = 1.0
CLOSE_NOTIFY_SECONDS = 1.0

PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain\r\n"
    b"Connection: close\r\n"
    b"Content-Length: 76\r\n"
    b"\r\n"
    b"This port speaks HTTPS and requires a client certificate: use https:// URLs\n"
)

# OpenSSL reason codes, as ssl.SSLError.reason carries them, in the words an operator needs.
HANDSHAKE_REASONS = {
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "no client certificate",
    "UNSUPPORTED_PROTOCOL": "client offered only TLS versions older than 1.2",
    "VERSION_TOO_LOW": "client offered only TLS versions older than 1.2",
    "NO_PROTOCOLS_AVAILABLE": "no TLS version in common",
    "NO_SHARED_CIPHER": "no cipher suite in common",
    "WRONG_VERSION_NUMBER": "not a TLS handshake (wrong version number)",
    "HTTP_REQUEST": "plain HTTP sent to the HTTPS port",
    "UNEXPECTED_EOF_WHILE_READING": "client closed the connection during the handshake",
}


def describe_handshake_error(exc: BaseException) -> str:
    """One short phrase saying why a handshake failed, for the log line a peer causes."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"client certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        reason = getattr(exc, "reason", None) or ""
        if reason in HANDSHAKE_REASONS:
            return HANDSHAKE_REASONS[reason]
        if "ALERT_" in reason:
            # The peer refused us, e.g. it does not trust the server certificate.
            return "client sent alert: " + reason.split("ALERT_", 1)[1].lower().replace("_", " ")
        if isinstance(exc, ssl.SSLEOFError):
            return "client closed the connection during the handshake"
        return (reason or str(exc)).lower().replace("_", " ")
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by client"
    return exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc)


def linger_close(sock: socket.socket, seconds: float = LINGER_SECONDS) -> None:
    """Close without a reset: send FIN, read until the peer closes (bounded), then close."""
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(seconds)
        # socket.socket.recv, not SSLSocket.recv: after a failed handshake only raw bytes remain.
        while socket.socket.recv(sock, 4096):
            pass
    except OSError:
        pass  # the peer already went away, or the drain timed out: closing is all that is left
    finally:
        sock.close()


def subject_cn(cert: dict) -> str:
    """The commonName of a certificate as returned by SSLSocket.getpeercert()."""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return "?"


class Peer:
    """The verified identity of the client on one connection."""

    def __init__(self, tls: ssl.SSLSocket):
        cert = tls.getpeercert()
        self.cn = subject_cn(cert)
        self.fingerprint = fingerprint(tls.getpeercert(binary_form=True))
        self.not_after = iso_utc(cert["notAfter"])
        self.tls_version = tls.version()
        self.cipher = tls.cipher()[0]


def iso_utc(openssl_time: str) -> str:
    """'Dec  4 21:11:00 2027 GMT' (as getpeercert() gives it) as ISO 8601 UTC."""
    seconds = ssl.cert_time_to_seconds(openssl_time)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class MutualTLSServer(ThreadingHTTPServer):
    """ThreadingHTTPServer whose workers do the TLS handshake, pin the peer and close cleanly."""

    daemon_threads = True
    # Bigger than socketserver's 5 so bursts of real clients wait in the kernel, not in SYN retries.
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], handler, context: ssl.SSLContext,
                 trusted: TrustedSet, handshake_timeout: float = 5.0,
                 idle_timeout: float = 30.0):
        self.context = context
        self.trusted = trusted
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)

    # -- per-connection flow, in the worker thread ------------------------------------------------

    def process_request_thread(self, request: socket.socket, client_address) -> None:
        """Handshake, serve HTTP on the verified connection, then close it with close_notify."""
        peer_name = format_address(client_address)
        try:
            tls = self.secure(request, peer_name)
        except (OSError, ValueError) as exc:  # before the TLS wrap: the peer was silent or vanished
            log.warning("%s handshake failed: %s", peer_name, describe_handshake_error(exc))
            linger_close(request)
            return
        if tls is None:
            return
        try:
            self.finish_request(tls, client_address)
        except Exception as exc:  # noqa: BLE001 - one line per peer-caused failure, never a traceback
            self.log_connection_error(peer_name, exc)
        finally:
            self.close_tls(tls)

    def secure(self, sock: socket.socket, peer_name: str) -> Optional[ssl.SSLSocket]:
        """Return the verified TLS socket, or None after refusing the peer (already logged)."""
        sock.settimeout(self.handshake_timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.looks_like_tls(sock, peer_name):
            return None
        # Read the context once: a reload swaps self.context, this connection keeps what it began with.
        context, trusted = self.context, self.trusted
        tls = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        try:
            tls.do_handshake()  # bounded: Python applies the socket timeout as a deadline
        except (OSError, ValueError) as exc:
            log.warning("%s handshake failed: %s", peer_name, describe_handshake_error(exc))
            linger_close(tls)
            return None
        der = tls.getpeercert(binary_form=True)
        if fingerprint(der) not in trusted:
            log.warning("%s refused: certificate %s is not in the trusted set (signed by a trusted "
                        "certificate, but only exact certificates are trusted)",
                        peer_name, fingerprint(der)[:16])
            self.close_tls(tls)
            return None
        tls.settimeout(self.idle_timeout)
        return tls

    def looks_like_tls(self, sock: socket.socket, peer_name: str) -> bool:
        """Peek at the first byte: answer plain HTTP with a readable 400 instead of a TLS alert."""
        first = sock.recv(1, socket.MSG_PEEK)
        if not first:
            log.info("%s closed before sending anything", peer_name)
            sock.close()
            return False
        if first[0] == TLS_HANDSHAKE_RECORD:
            return True
        if first.isalpha():
            log.warning("%s refused: plain HTTP sent to the HTTPS port", peer_name)
            sock.sendall(PLAIN_HTTP_ANSWER)
            linger_close(sock)
            return False
        return True  # let OpenSSL reject the garbage with a proper alert

    def close_tls(self, tls: ssl.SSLSocket) -> None:
        """Send close_notify (bounded wait for the peer's), then close without a reset."""
        try:
            tls.settimeout(CLOSE_NOTIFY_SECONDS)
            plain = tls.unwrap()
        except (OSError, ValueError):
            plain = tls  # peer already gone or spoke out of turn; still close quietly
        linger_close(plain)

    def log_connection_error(self, peer_name: str, exc: BaseException) -> None:
        """Peer-caused failures are one line; anything else is our bug and keeps its traceback."""
        if isinstance(exc, (OSError, ValueError)):
            log.warning("%s connection error: %s", peer_name, describe_handshake_error(exc))
        else:
            log.exception("%s internal error", peer_name)

    # -- reload ------------------------------------------------------------------------------------

    def replace_trust(self, context: ssl.SSLContext, trusted: TrustedSet) -> None:
        """Swap in a new context and trusted set; connections already open keep theirs."""
        self.context, self.trusted = context, trusted

    def drain(self) -> None:
        """Called after the accept loop stopped: nothing to wait for yet (workers are daemons)."""


def format_address(address) -> str:
    """host:port for IPv4, [host]:port for IPv6, as access logs write peers."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
