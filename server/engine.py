"""The connection engine behind webserver.py: one event loop, a small pool for TLS handshakes.

Why it is built this way (each point is a mistake the usual tutorial server makes):
- The listening socket stays plain TCP. Wrapping it in TLS makes accept() do the handshake, and one
  silent client then stalls everyone. Here a new connection costs a socket and a small object until
  its bytes arrive, so hundreds of silent peers hold no thread and block no one.
- Handshakes, the only heavy work (public-key crypto), run in a few worker threads; OpenSSL
  releases the GIL meanwhile, so they use every core. Every other step is quick, non-blocking, and
  runs on the event loop.
- Every state has a deadline: handshake, request head, idle keep-alive, lingering close.
- A refused peer must receive the alert that says why. Closing a socket whose receive buffer still
  holds unread bytes makes the kernel send a reset that can destroy that alert, so refusals send
  FIN, read until the peer closes (bounded), then close.
- Every TLS connection ends with close_notify, so clients can tell a complete response from a
  truncated one.
- After the handshake the peer is pinned by the SHA-256 of its exact certificate (see trust.py).
- At most max_connections are open; beyond that new ones wait in the kernel's listen backlog.
- TLS runs on memory buffers (ssl.SSLObject + MemoryBIO), not SSLSocket: the engine reads the
  socket once per batch of records and writes once per batch of responses. SSLSocket reads each
  record with two system calls (header, then body) and could not be told otherwise.
"""

import errno
import logging
import os
import queue
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from typing import Callable, Optional, Tuple

from accesslog import AccessLog
from http11 import BadRequest, parse_head, response, split_head
from peer import Peer
from trust import TrustedSet

log = logging.getLogger("mtls")

App = Callable[[str, Peer, str], Tuple[int, str, bytes]]

LINGER_SECONDS = 1.0
TICK_SECONDS = 0.1
ACCEPT_BURST = 64
READ_SIZE = 65536
MAX_PENDING_OUTPUT = 256 * 1024  # answers waiting for a slow reader; beyond it, stop parsing
LINGER_READS = 4                 # reads per wake-up while discarding a refused peer's bytes
# accept() errors that mean "out of resources": back off. Others concern one connection only.
ACCEPT_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

PLAIN_HTTP_ANSWER = response(
    400, "text/plain",
    b"This port speaks HTTPS and requires a client certificate: use https:// URLs\n",
    keep_alive=False)

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

# OpenSSL verify codes meaning "no trusted certificate vouches for this one": self-signed and not
# ours (18, 19), or its issuer unknown (20, 21). Its own message ("self-signed certificate") misleads.
UNKNOWN_CERTIFICATE_CODES = (18, 19, 20, 21)

# What a connection is doing; the event loop dispatches on it.
FRESH, HANDSHAKE, OPEN, LINGER = "fresh", "handshake", "open", "linger"
# What a handshake step asks the loop to do next.
WAIT_READ, WAIT_WRITE, SERVE, REFUSE, CLOSE, DROP = (
    "wait-read", "wait-write", "serve", "refuse", "close", "drop")


def describe_peer_error(exc: BaseException) -> str:
    """One short phrase saying why a connection failed, for the one log line a peer causes."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in UNKNOWN_CERTIFICATE_CODES:
            return "client certificate not trusted (not in the trusted set)"
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
    if isinstance(exc, ConnectionResetError):
        return "connection reset by client"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


def format_address(address) -> str:
    """host:port for IPv4, [host]:port for IPv6, as access logs write peers."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Connection:
    """One client connection; owned by the event loop, or by one handshake worker at a time."""

    __slots__ = ("sock", "name", "state", "deadline", "tls", "incoming", "outgoing", "inbuf",
                 "outbuf", "skip", "peer", "trusted", "closing", "peer_done", "fin_sent", "events",
                 "next_step")

    def __init__(self, sock: socket.socket, name: str, deadline: float):
        self.sock = sock         # the plain TCP socket, for the connection's whole life
        self.name = name
        self.state = FRESH
        self.deadline = deadline
        self.tls: Optional[ssl.SSLObject] = None
        self.incoming = ssl.MemoryBIO()   # TLS bytes read from the socket, for OpenSSL
        self.outgoing = ssl.MemoryBIO()   # TLS bytes from OpenSSL, to write to the socket
        self.inbuf = bytearray()  # decrypted request bytes not yet parsed
        self.outbuf = bytearray() # TLS bytes the socket did not take yet
        self.skip = 0             # bytes of an ignored request body still to discard
        self.peer: Optional[Peer] = None
        self.trusted: Optional[TrustedSet] = None
        self.closing = False      # close (with close_notify) once the answer is sent
        self.peer_done = False    # the client closed its side: answer what is buffered, then close
        self.fin_sent = False
        self.events = 0           # what the selector watches for; 0 = not registered
        self.next_step = ""


class MutualTLSServer:
    """HTTPS with mandatory client certificates: accept, handshake, pin, serve `app`, close cleanly."""

    def __init__(self, address: Tuple[str, int], app: App, context: ssl.SSLContext,
                 trusted: TrustedSet, handshake_timeout: float = 5.0, idle_timeout: float = 30.0,
                 max_connections: int = 512, workers: int = 0, drain_timeout: float = 10.0):
        self.app = app
        self.tls_config = (context, trusted)  # one attribute, so a reload swaps both at once
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self.drain_timeout = drain_timeout
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        # A backlog as deep as the connection limit: a burst of connects waits in the kernel instead of
        # having its SYNs dropped (and retried a second later).
        self.listener = socket.create_server(address, family=family,
                                             backlog=max(128, max_connections))
        self.listener.setblocking(False)
        self.server_address = self.listener.getsockname()
        self.selector = selectors.DefaultSelector()
        self.wake_reader, self.wake_writer = socket.socketpair()
        self.wake_reader.setblocking(False)
        self.wake_writer.setblocking(False)
        self.conns = set()
        self.accepting = False
        self.accept_pause_until = 0.0
        self.stop_requested = False
        self.draining = False
        self.drain_deadline = 0.0
        self.stopped = threading.Event()
        self.access_log = AccessLog()
        self.next_sweep = 0.0
        self.handed_back: "deque[Connection]" = deque()  # appended by workers, read by the loop
        self.jobs: "queue.SimpleQueue[Optional[Connection]]" = queue.SimpleQueue()
        count = workers or min(8, max(2, os.cpu_count() or 2))
        self.workers = [threading.Thread(target=self._handshake_worker, name=f"handshake-{i}",
                                         daemon=True) for i in range(count)]
        for worker in self.workers:
            worker.start()

    # -- public controls ---------------------------------------------------------------------------

    def replace_trust(self, context: ssl.SSLContext, trusted: TrustedSet) -> None:
        """Swap in a new context and trusted set; connections already open keep theirs."""
        self.tls_config = (context, trusted)

    def serve_forever(self) -> None:
        """Run the event loop until shutdown() has drained the connections."""
        self.selector.register(self.wake_reader, selectors.EVENT_READ, None)
        self._resume_accepting()
        try:
            while not self._finished():
                for key, mask in self.selector.select(TICK_SECONDS):
                    self._dispatch(key, mask)
                now = time.monotonic()
                if now >= self.next_sweep:  # deadlines and the log are coarse: once a tick
                    self.next_sweep = now + TICK_SECONDS
                    self._expire(now)
                    self.access_log.flush()
        finally:
            try:
                for conn in [c for c in self.conns if c.events or c.state != HANDSHAKE]:
                    self._close_now(conn)  # the loop's own; workers' are closed in server_close
                self.access_log.flush()
            finally:
                self.stopped.set()

    def shutdown(self) -> None:
        """Stop accepting, let requests in flight finish (up to drain_timeout), then return."""
        self.stop_requested = True
        self._wake()
        self.stopped.wait(self.drain_timeout + 5)

    def server_close(self) -> None:
        for _ in self.workers:
            self.jobs.put(None)
        for worker in self.workers:
            worker.join(2)
        for conn in list(self.conns):  # handshakes cut short by the drain deadline
            conn.sock.close()
        self.listener.close()
        self.selector.close()
        self.wake_reader.close()
        self.wake_writer.close()

    # -- the event loop ----------------------------------------------------------------------------

    def _dispatch(self, key: selectors.SelectorKey, mask: int) -> None:
        """Handle one ready socket. A bug met on one connection must not stop the others."""
        try:
            if key.fileobj is self.listener:
                self._accept()
            elif key.data is None:
                self._take_back()
            else:
                self._on_ready(key.data, mask)
        except Exception:  # noqa: BLE001 - our bug: keep the traceback, drop only that connection
            log.exception("internal error in the event loop")
            if isinstance(key.data, Connection):
                self._close_now(key.data)

    def _finished(self) -> bool:
        if self.stop_requested and not self.draining:
            self._begin_drain()
        return self.draining and (not self.conns or time.monotonic() >= self.drain_deadline)

    def _begin_drain(self) -> None:
        self.access_log.flush()  # requests served so far are logged before the stop line
        self.draining = True
        self.drain_deadline = time.monotonic() + self.drain_timeout
        self._pause_accepting()
        self.listener.close()
        busy = 0
        for conn in list(self.conns):
            if conn.state == FRESH:
                self._close_now(conn)
            elif conn.state == OPEN and not conn.inbuf and not conn.outbuf:
                self._close_tls(conn)  # idle keep-alive: nothing in flight
            elif conn.state != LINGER:
                busy += 1
        log.info("stopping: finishing %d connection(s) in flight (up to %gs)", busy, self.drain_timeout)

    def _on_ready(self, conn: Connection, mask: int) -> None:
        try:
            if mask & selectors.EVENT_WRITE and conn.outbuf:
                pending = len(conn.outbuf)
                if not self._send(conn):
                    if conn.state == OPEN and len(conn.outbuf) < pending:
                        conn.deadline = time.monotonic() + self.idle_timeout  # slow, not stuck
                    return  # still waiting for the socket to take our bytes
        except OSError as exc:
            self._drop(conn, exc)
            return
        if conn.state == FRESH:
            self._start_tls(conn)
        elif conn.state == HANDSHAKE:
            if mask & selectors.EVENT_READ:
                self._submit(conn)
            else:
                self._watch(conn, selectors.EVENT_READ)
        elif conn.state == OPEN:
            if mask & selectors.EVENT_READ:
                self._read_requests(conn)
            else:
                self._after_answer(conn)
        elif conn.state == LINGER:
            self._linger(conn)

    def _accept(self) -> None:
        now = time.monotonic()
        for _ in range(ACCEPT_BURST):
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in ACCEPT_EXHAUSTED:
                    continue  # that one connection failed (e.g. reset while queued): next
                log.error("accept failed: %s; pausing accepts for a second", exc.strerror or exc)
                self._pause_accepting(now + 1.0)  # out of descriptors: back off, do not spin
                return
            try:
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # BSDs refuse options on a socket the peer already reset
                sock.close()
                continue
            conn = Connection(sock, format_address(address), now + self.handshake_timeout)
            self.conns.add(conn)
            self._watch(conn, selectors.EVENT_READ)
            if len(self.conns) >= self.max_connections:
                self._pause_accepting()  # the rest wait in the listen backlog
                return

    def _pause_accepting(self, until: float = 0.0) -> None:
        if self.accepting:
            self.selector.unregister(self.listener)
            self.accepting = False
        self.accept_pause_until = until

    def _resume_accepting(self) -> None:
        if not self.accepting and not self.draining:
            self.selector.register(self.listener, selectors.EVENT_READ, None)
            self.accepting = True

    def _expire(self, now: float) -> None:
        """Enforce deadlines, and accept again once there is room."""
        for conn in [c for c in self.conns if now >= c.deadline and c.events]:
            if conn.state in (FRESH, HANDSHAKE):
                log.warning("%s handshake failed: timed out after %gs", conn.name,
                            self.handshake_timeout)
                self._close_now(conn)
            elif conn.state == OPEN and conn.outbuf:
                log.warning("%s connection error: client stopped reading the response", conn.name)
                self._close_now(conn)
            elif conn.state == OPEN and conn.inbuf:
                log.warning("%s request timed out: incomplete request head", conn.name)
                self._close_tls(conn)
            elif conn.state == OPEN:
                self._close_tls(conn)  # idle keep-alive connection: a normal end
            else:
                self._close_now(conn)
        if (not self.accepting and not self.draining and now >= self.accept_pause_until
                and len(self.conns) < self.max_connections):
            self._resume_accepting()

    # -- selector bookkeeping ----------------------------------------------------------------------

    def _watch(self, conn: Connection, events: int) -> None:
        if conn.events == events:
            return
        if conn.events:
            self.selector.modify(conn.sock, events, conn)
        else:
            self.selector.register(conn.sock, events, conn)
        conn.events = events

    def _unwatch(self, conn: Connection) -> None:
        if conn.events:
            self.selector.unregister(conn.sock)
            conn.events = 0

    def _close_now(self, conn: Connection) -> None:
        self._unwatch(conn)
        conn.sock.close()
        self.conns.discard(conn)

    def _drop(self, conn: Connection, exc: BaseException) -> None:
        """The peer broke the connection (reset, bad record...): one log line, then close."""
        log.warning("%s connection error: %s", conn.name, describe_peer_error(exc))
        self._close_now(conn)

    # -- TLS: classify, handshake in the pool, refuse or serve -------------------------------------

    def _start_tls(self, conn: Connection) -> None:
        """Peek at the first byte: TLS goes to the handshake pool, plain HTTP gets a readable 400."""
        try:
            first = conn.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("%s handshake failed: %s", conn.name, describe_peer_error(exc))
            self._close_now(conn)
            return
        if not first:
            log.info("%s closed before sending anything", conn.name)
            self._close_now(conn)
            return
        if first.isalpha():  # a method name; a TLS record starts with 0x16
            log.warning("%s refused: plain HTTP sent to the HTTPS port", conn.name)
            conn.outbuf += PLAIN_HTTP_ANSWER
            self._linger(conn)
            return
        # Read the pair once: a reload swaps it, this connection keeps what it began with.
        context, conn.trusted = self.tls_config
        conn.tls = context.wrap_bio(conn.incoming, conn.outgoing, server_side=True)
        conn.state = HANDSHAKE
        self._submit(conn)

    def _submit(self, conn: Connection) -> None:
        self._unwatch(conn)
        self.jobs.put(conn)

    def _handshake_worker(self) -> None:
        while True:
            conn = self.jobs.get()
            if conn is None:
                return
            try:
                conn.next_step = self._handshake_step(conn)
            except Exception:  # noqa: BLE001 - our bug: keep the traceback, drop the connection
                log.exception("%s internal error during the handshake", conn.name)
                conn.next_step = REFUSE
            self.handed_back.append(conn)
            self._wake()

    def _handshake_step(self, conn: Connection) -> str:
        """Advance one handshake as far as the bytes received allow (runs in a worker thread)."""
        try:
            self._receive(conn)
            conn.tls.do_handshake()
        except ssl.SSLWantReadError:
            try:
                return WAIT_READ if self._send(conn) else WAIT_WRITE
            except OSError as exc:
                log.warning("%s handshake failed: %s", conn.name, describe_peer_error(exc))
                return DROP
        except (OSError, ValueError) as exc:
            log.warning("%s handshake failed: %s", conn.name, describe_peer_error(exc))
            return REFUSE  # OpenSSL's alert is in conn.outgoing: _linger sends it
        der = conn.tls.getpeercert(binary_form=True)
        peer = Peer(conn.tls, der)
        if peer.fingerprint not in conn.trusted:
            log.warning("%s refused: certificate %s (CN=%s) is not in the trusted set (signed by "
                        "a trusted certificate, but only exact certificates are trusted)",
                        conn.name, peer.fingerprint[:16], peer.cn)
            return CLOSE
        conn.peer = peer
        return SERVE

    def _take_back(self) -> None:
        """Continue the connections the handshake workers have finished a step on."""
        try:
            while self.wake_reader.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self.handed_back:
            conn = self.handed_back.popleft()
            step = conn.next_step
            if step == WAIT_READ:
                self._watch(conn, selectors.EVENT_READ)
            elif step == WAIT_WRITE:
                self._watch(conn, selectors.EVENT_READ | selectors.EVENT_WRITE)
            elif step == SERVE:
                conn.state = OPEN
                conn.deadline = time.monotonic() + self.idle_timeout
                try:
                    sent = self._send(conn)  # the end of the handshake (TLS 1.2 server Finished)
                except OSError:
                    self._close_now(conn)
                    continue
                self._watch(conn, selectors.EVENT_READ | (0 if sent else selectors.EVENT_WRITE))
                self._read_requests(conn)  # the first request often arrives with the handshake
            elif step == CLOSE:
                self._close_tls(conn)
            elif step == DROP:
                self._close_now(conn)
            else:
                self._linger(conn)

    def _wake(self) -> None:
        try:
            self.wake_writer.send(b"\0")
        except (BlockingIOError, OSError):
            pass  # already awake (buffer full), or closing

    # -- moving TLS bytes between the socket and OpenSSL's memory buffers ---------------------------

    def _receive(self, conn: Connection) -> None:
        """One non-blocking read from the socket into OpenSSL's input buffer (EOF included)."""
        try:
            data = conn.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        if data:
            conn.incoming.write(data)
        else:
            conn.incoming.write_eof()

    def _send(self, conn: Connection) -> bool:
        """Write OpenSSL's output and anything left over; True once the socket took it all."""
        if conn.outgoing.pending:
            conn.outbuf += conn.outgoing.read()
        if conn.outbuf:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                sent = 0
            del conn.outbuf[:sent]
        return not conn.outbuf

    # -- HTTP on a verified connection -------------------------------------------------------------

    def _read_requests(self, conn: Connection) -> None:
        try:
            self._receive(conn)
            while True:
                data = conn.tls.read(READ_SIZE)
                if not data:
                    raise ssl.SSLZeroReturnError  # read() says close_notify with b"", not raising
                conn.inbuf += data
                if not (conn.incoming.pending or conn.tls.pending()):
                    break  # all decrypted; asking again would only raise SSLWantReadError
        except ssl.SSLWantReadError:
            pass  # all complete records decrypted
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            # The client closed its side (close_notify or EOF). TLS 1.3 allows that half-close
            # right after a request: answer what is complete, then close with ours.
            conn.peer_done = True
        except (OSError, ValueError) as exc:
            self._drop(conn, exc)
            return
        if conn.inbuf or conn.peer_done:
            self._serve_buffered(conn)

    def _serve_buffered(self, conn: Connection) -> None:
        """Answer every complete request in the buffer (pipelining allowed), in one write."""
        out = []
        room = MAX_PENDING_OUTPUT - len(conn.outbuf)
        while not conn.closing and room > 0:
            if conn.skip:
                dropped = min(conn.skip, len(conn.inbuf))
                del conn.inbuf[:dropped]
                conn.skip -= dropped
                if conn.skip:
                    break
            try:
                head = split_head(conn.inbuf)
                if head is None:
                    break
                request = parse_head(head)
            except BadRequest as exc:
                log.warning("%s CN=%s bad request: %s", conn.name, conn.peer.cn, exc)
                out.append(response(exc.status, "text/plain", f"{exc}\n".encode(), False))
                conn.closing = True
                break
            out.append(self._answer(conn, request))
            room -= len(out[-1])
        if conn.peer_done:
            conn.closing = True
        if out:
            try:
                conn.tls.write(b"".join(out))
                self._send(conn)
            except OSError as exc:
                self._drop(conn, exc)
                return
            self._after_answer(conn)
        elif conn.closing:
            self._close_tls(conn)
        elif conn.inbuf:
            # Bytes of a request head are here: it must complete within the handshake timeout.
            conn.deadline = min(conn.deadline, time.monotonic() + self.handshake_timeout)

    def _answer(self, conn: Connection, request) -> bytes:
        keep_alive = request.keep_alive and not self.draining
        if request.method in ("GET", "HEAD"):
            try:
                status, content_type, body = self.app(request.target, conn.peer, request.accept)
            except Exception:  # noqa: BLE001 - our bug: log it whole, answer 500, keep serving
                log.exception("%s internal error answering %s", conn.name, request.line)
                status, content_type, body, keep_alive = 500, "text/plain", b"Internal error\n", False
            conn.skip = request.body_length
            extra = ()
        else:
            status, content_type, body, keep_alive = 501, "text/plain", b"Only GET and HEAD\n", False
            extra = (("Allow", "GET, HEAD"),)
        self.access_log.request(conn.name, conn.peer.cn, request.line, status)
        conn.closing = not keep_alive
        return response(status, content_type, body, keep_alive, request.method != "HEAD", extra)

    def _after_answer(self, conn: Connection) -> None:
        """Once the answer is out: wait for the socket if it is slow, close, or await the next."""
        if conn.outbuf:  # the client is slow to read: wait until the socket takes more
            conn.deadline = time.monotonic() + self.idle_timeout
            self._watch(conn, selectors.EVENT_WRITE)
            return
        if conn.closing or (self.draining and not conn.inbuf):
            self._close_tls(conn)
            return
        self._watch(conn, selectors.EVENT_READ)
        conn.deadline = time.monotonic() + self.idle_timeout
        if conn.inbuf:
            self._serve_buffered(conn)  # a pipelined request, or the rest of one

    # -- closing -----------------------------------------------------------------------------------

    def _close_tls(self, conn: Connection) -> None:
        """Queue our close_notify, then close without a reset."""
        try:
            conn.tls.unwrap()  # writes close_notify; the peer's may come later or never
        except (ssl.SSLWantReadError, OSError, ValueError):
            pass
        self._linger(conn)

    def _linger(self, conn: Connection) -> None:
        """Send what is left, then FIN; read and discard until the peer closes (bounded)."""
        if conn.state != LINGER:
            conn.state = LINGER
            conn.deadline = time.monotonic() + LINGER_SECONDS
        try:
            if not self._send(conn):
                self._watch(conn, selectors.EVENT_WRITE)
                return
            if not conn.fin_sent:
                conn.sock.shutdown(socket.SHUT_WR)
                conn.fin_sent = True
            for _ in range(LINGER_READS):  # bounded: a peer that keeps sending waits its turn
                if not conn.sock.recv(READ_SIZE):
                    break  # the peer closed: now closing sends no reset
            else:
                self._watch(conn, selectors.EVENT_READ)
                return
        except (BlockingIOError, InterruptedError):
            self._watch(conn, selectors.EVENT_READ)
            return
        except OSError:
            pass  # the peer is gone already
        self._close_now(conn)
