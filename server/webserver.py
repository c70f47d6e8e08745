"""A mutual-TLS HTTPS server: it proves itself with its certificate and demands one from the client.

    cd server && python3 webserver.py        # then, from client/: python3 client.py
"""

import argparse
import errno
import logging
import os
import ssl
import sys
from pathlib import Path
from typing import List, Optional, Tuple
from urllib.parse import urlsplit

from engine import MutualTLSServer
from hardening import insecure_key_mode
from lifecycle import serve_until_stopped
from peer import Peer
from trust import TrustedSet, TrustError, load_trusted_set
from whoami import whoami_response

HERE = Path(__file__).resolve().parent
log = logging.getLogger("mtls")


def server_context(cert: Path, key: Path, trusted: TrustedSet,
                   session_tickets: int = 0) -> ssl.SSLContext:
    """The server's TLS policy in one place (the engine adds one check after the handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2          # TLS 1.3 is on and preferred
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")      # TLS 1.2: forward secrecy + AEAD only
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    context.num_tickets = session_tickets                     # TLS 1.3 resumption: see --session-tickets
    context.load_cert_chain(cert, key)                        # who we are
    context.verify_mode = ssl.CERT_REQUIRED                   # a client certificate is mandatory...
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cadata=trusted.pem)         # ...and must chain to one of these.
    # OpenSSL also accepts a certificate merely *signed by* a trusted one, so after each handshake
    # the engine pins the peer to the SHA-256 of an exact trusted certificate (trust.py).
    return context


def answer(path: str, peer: Peer, accept: str = "") -> Tuple[int, str, bytes]:
    """The whole application: status, content type and body for a GET (or HEAD) from a verified
    peer."""
    route = urlsplit(path).path
    if route == "/":
        return 200, "text/plain", b"Hello world!"
    if route == "/whoami":
        return whoami_response(peer, accept)
    return 404, "text/plain", b"Not found\n"


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Hello-world HTTPS server that requires a client certificate.",
        epilog="kill -HUP <pid> reloads the certificate, key and trusted client certificates.")
    parser.add_argument("--bind", default="127.0.0.1", metavar="ADDRESS",
                        help="address to listen on (default: %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=4443,
                        help="port (default: %(default)s; 0 picks a free one)")
    parser.add_argument("--tls-cert", type=Path, default=HERE / "server-cert.pem", metavar="PATH",
                        help="server certificate (default: server/server-cert.pem)")
    parser.add_argument("--tls-key", type=Path, default=HERE / "server-key.pem", metavar="PATH",
                        help="server private key (default: server/server-key.pem)")
    parser.add_argument("--tls-client-certs", type=Path, action="append", metavar="PATH",
                        help="trusted client certificates: a PEM bundle or a directory of *.pem; "
                             "repeatable (default: server/client-cert.pem and server/clients/)")
    parser.add_argument("--handshake-timeout", type=float, default=5.0, metavar="SECONDS",
                        help="drop peers that have not finished the TLS handshake, or a request "
                             "head they started, within this time (default: %(default)s)")
    parser.add_argument("--idle-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="close keep-alive connections idle this long (default: %(default)s)")
    parser.add_argument("--max-connections", type=int, default=512, metavar="N",
                        help="connections handled at once; more wait in the listen backlog "
                             "(default: %(default)s)")
    parser.add_argument("--session-tickets", type=int, default=0, metavar="N",
                        help="TLS 1.3 session tickets sent per full handshake; they let returning "
                             "clients resume, but cost server CPU on every handshake, more than "
                             "resuming saves on a local network (default: %(default)s; "
                             "see bench/RESULTS.md)")
    parser.add_argument("--drain-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="on SIGTERM, how long requests in flight may take to finish "
                             "(default: %(default)s)")
    args = parser.parse_args(argv)
    check_ranges(parser, args)
    return args


def check_ranges(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse values that would crash later or quietly stop the server from serving."""
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0 to 65535, got {args.port}")
    for flag in ("handshake_timeout", "idle_timeout", "drain_timeout"):
        if not 0 < getattr(args, flag) <= 86400:
            parser.error(f"--{flag.replace('_', '-')} must be more than 0 and at most 86400 seconds")
    if args.max_connections < 1:
        parser.error(f"--max-connections must be at least 1, got {args.max_connections}")
    if not 0 <= args.session_tickets <= 16:
        parser.error(f"--session-tickets must be 0 to 16, got {args.session_tickets}")


def trusted_paths(args: argparse.Namespace) -> List[Path]:
    """Explicit --tls-client-certs, else the default bundle plus the clients/ directory if present."""
    if args.tls_client_certs:
        return args.tls_client_certs
    defaults = [HERE / "client-cert.pem", HERE / "clients"]
    return [p for p in defaults if p.exists()] or defaults[:1]


class ConfigError(Exception):
    """A file the server needs is missing or broken; the message names it and the fix."""


def load_tls(args: argparse.Namespace) -> Tuple[ssl.SSLContext, TrustedSet]:
    """Read identity and trusted set from disk: at start-up, and again on every reload."""
    for path in (args.tls_cert, args.tls_key):
        if not path.is_file():
            raise ConfigError(f"{'not a file' if path.exists() else 'missing'}: {path}; "
                              + fix_for(path))
    problem = insecure_key_mode(args.tls_key)
    if problem:
        raise ConfigError(problem)
    try:
        trusted = load_trusted_set(trusted_paths(args))
        return server_context(args.tls_cert, args.tls_key, trusted, args.session_tickets), trusted
    except TrustError as exc:
        fix = "check the paths given to --tls-client-certs" if args.tls_client_certs else \
            fix_for(HERE / "client-cert.pem")
        raise ConfigError(f"{exc}; {fix}") from None
    except ssl.SSLError as exc:
        raise ConfigError(f"cannot load the TLS identity ({exc.reason or exc}); check the "
                          "certificate matches the key, or re-run ./bootstrap.sh --force") from None
    except OSError as exc:  # e.g. a key owned by another user
        raise ConfigError(f"cannot read {exc.filename or args.tls_key}: {exc.strerror or exc}; "
                          "run the server as the user who owns its key") from None


def fix_for(path: Path) -> str:
    """The fix to print for a missing file: bootstrap for our own files, else check the flag."""
    if path.parent == HERE:
        return "run ./bootstrap.sh first to create the identities"
    return "check the path given on the command line"


def listen(args: argparse.Namespace, context: ssl.SSLContext, trusted: TrustedSet) -> MutualTLSServer:
    try:
        return MutualTLSServer((args.bind, args.port), answer, context, trusted,
                               handshake_timeout=args.handshake_timeout,
                               idle_timeout=args.idle_timeout,
                               max_connections=args.max_connections,
                               drain_timeout=args.drain_timeout)
    except OSError as exc:
        in_use = exc.errno == errno.EADDRINUSE
        hint = "; is another server running? choose another --port" if in_use else ""
        raise ConfigError(f"cannot listen on {args.bind}:{args.port}: {exc.strerror or exc}{hint}") from None


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    try:
        context, trusted = load_tls(args)
        server = listen(args, context, trusted)
    except ConfigError as exc:
        print(f"webserver: error: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    shown = f"[{host}]" if ":" in host else ("localhost" if host == "127.0.0.1" else host)

    def announce() -> None:
        log.info("serving https://%s:%d/ (pid %d), trusting %d client certificate(s); "
                 "Ctrl-C stops, kill -HUP %d reloads", shown, port, os.getpid(), len(trusted),
                 os.getpid())

    healthy = serve_until_stopped(server, lambda: load_tls(args), announce)
    log.info("stopped")
    return 0 if healthy else 1


if __name__ == "__main__":
    raise SystemExit(main())
