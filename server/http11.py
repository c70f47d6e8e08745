"""Just enough HTTP/1.1 for the demo: parse a request head, format a response, keep-alive rules.

The standard library's http.server parses headers with the email package, which costs more CPU
per request than the whole TLS record layer; this parser reads only the request line and the four
headers the server acts on, and refuses what it does not implement instead of guessing.
"""

import re
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Optional, Tuple

MAX_HEAD_BYTES = 16384          # request line + headers; more is refused (431)
MAX_BODY_BYTES = 65536          # GET needs no body; a small one is read and ignored, a larger refused
SERVER_NAME = b"mtls-demo"


class BadRequest(Exception):
    """The request cannot be served; `status` says why, and the connection is closed after."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


@dataclass
class Request:
    method: str
    target: str
    version: str
    keep_alive: bool
    accept: str
    body_length: int

    @property
    def line(self) -> str:
        return f"{self.method} {self.target} {self.version}"


def split_head(buffer: bytearray) -> Optional[bytes]:
    """Remove and return one complete request head from buffer, or None if it is not all here."""
    while buffer.startswith(b"\r\n"):  # RFC 9112: ignore empty lines before a request
        del buffer[:2]
    end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD_BYTES + 4)  # never search past the limit
    if end < 0:
        if len(buffer) > MAX_HEAD_BYTES:
            raise BadRequest(431, "request head too large")
        if b"\n\n" in buffer:  # bare-LF lines: say so now rather than wait for the timeout
            raise BadRequest(400, "request lines must end with CRLF")
        return None
    head = bytes(buffer[:end])
    del buffer[:end + 4]
    return head


def parse_head(head: bytes) -> Request:
    """Request line and the headers the server acts on; anything malformed is a BadRequest."""
    line, _, header_block = head.partition(b"\r\n")
    if CONTROL_CHARACTERS.search(line):  # it goes into the log: no forged lines, no escapes
        raise BadRequest(400, "control character in the request line")
    try:
        method, target, version = line.decode("ascii").split(" ")
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(400, "malformed request line") from None
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise BadRequest(505, f"unsupported version {version[:16]!r}")
    fields = header_fields(header_block) if header_block else {}
    if b"transfer-encoding" in fields:
        raise BadRequest(501, "chunked request bodies are not supported")
    length = fields.get(b"content-length", "0")
    if not (length.isascii() and length.isdigit()):  # int() would also take "+5", " 5", "0_5"
        raise BadRequest(400, "malformed Content-Length")
    body_length = int(length)
    if body_length > MAX_BODY_BYTES:
        raise BadRequest(413, "request body too large")
    tokens = {token.strip() for token in fields.get(b"connection", "").lower().split(",")}
    keep_alive = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
    return Request(method, target, version, keep_alive, fields.get(b"accept", ""), body_length)


def header_fields(block: bytes) -> dict:
    """The headers the server acts on, by lower-case name; every line must be `name: value`."""
    fields = {}
    for line in block.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise BadRequest(400, "malformed header line")
        name = name.lower()
        if name in WANTED_HEADERS:
            value = value.strip().decode("latin-1")
            if name == b"content-length" and fields.get(name, value) != value:
                # Two different lengths: which one a proxy used is unknowable (request smuggling).
                raise BadRequest(400, "conflicting Content-Length headers")
            fields[name] = value
    return fields


WANTED_HEADERS = frozenset((b"transfer-encoding", b"content-length", b"connection", b"accept"))
CONTROL_CHARACTERS = re.compile(rb"[\x00-\x1f\x7f]")


class DateHeader:
    """The Date header changes once a second; format it once a second, not once a request."""

    def __init__(self):
        self.second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self.second:
            self.second = now
            self._value = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
        return self._value


date_header = DateHeader()


def response(status: int, content_type: str, body: bytes, keep_alive: bool,
             send_body: bool = True, extra: Tuple[Tuple[str, str], ...] = ()) -> bytes:
    """A complete response as one buffer: one TLS write, one send() (one record up to 16 KiB)."""
    return response_head(status, content_type, len(body), keep_alive, extra) + (
        body if send_body else b"")


_heads: dict = {}
_heads_second = -1


def response_head(status: int, content_type: str, length: int, keep_alive: bool,
                  extra: Tuple[Tuple[str, str], ...] = ()) -> bytes:
    """Status line and headers; the same few heads repeat, so each is built once a second."""
    global _heads_second
    date = date_header()
    if date_header.second != _heads_second:  # the Date header changed: start afresh
        _heads.clear()
        _heads_second = date_header.second
    key = (status, content_type, length, keep_alive, extra)
    head = _heads.get(key)
    if head is None:
        lines = [b"HTTP/1.1 %d %s" % (status, HTTPStatus(status).phrase.encode()),
                 b"Server: " + SERVER_NAME,
                 b"Date: " + date,
                 b"Content-Type: " + content_type.encode(),
                 b"Content-Length: %d" % length]
        lines += [f"{name}: {value}".encode() for name, value in extra]
        if not keep_alive:
            lines.append(b"Connection: close")
        head = _heads[key] = b"\r\n".join(lines) + b"\r\n\r\n"
        if len(_heads) > 256:  # bodies of many lengths (whoami pages): do not grow unbounded
            _heads.clear()
    return head
