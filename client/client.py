"""A mutual-TLS HTTPS client: it checks the server's certificate and proves itself with its own.

    cd client && python3 client.py            # prints: Hello world!
"""

import argparse
import http.client
import re
import socket
import ssl
import sys
from pathlib import Path
from typing import List, Optional
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
NAME_MISMATCH_CODES = (62, 64)  # OpenSSL verify codes: host name, IP address not in the cert
IDENTITY_NAME = re.compile(r"[a-z0-9._-]{1,64}")  # as ./bootstrap.sh add-client accepts them


def client_context(cacert: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """The whole security policy of the client, in one place."""
    # Trust exactly the server certificate we were handed (not the system CAs), check the host name.
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cacert))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED   # the default already; stated because it is the point
    context.check_hostname = True              # the certificate must name the host we dialled
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_cert_chain(cert, key)  # who we are: presented when the server asks
    return context


class ClientError(Exception):
    """A failure the user can act on: one line on stderr, non-zero exit (2: our own files)."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Fetch a URL over mutual TLS and print the body.")
    parser.add_argument("url", nargs="?", default="https://localhost:4443/",
                        help="URL to fetch (default: %(default)s)")
    parser.add_argument("--identity", metavar="NAME",
                        help="use client/NAME/ (made by ./bootstrap.sh add-client NAME) "
                             "instead of the default identity in client/")
    parser.add_argument("--cacert", type=Path, metavar="PATH",
                        help="the server certificate we trust (default: client/server-cert.pem)")
    parser.add_argument("--cert", type=Path, metavar="PATH",
                        help="our client certificate (default: client/client-cert.pem)")
    parser.add_argument("--key", type=Path, metavar="PATH",
                        help="our private key (default: client/client-key.pem)")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="connect and read timeout (default: %(default)s)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show TLS version, cipher and the server certificate")
    args = parser.parse_args(argv)
    url = urlsplit(args.url)
    if url.scheme != "https" or not url.hostname:
        parser.error(f"URL must look like https://host[:port]/path, got {args.url!r}")
    try:
        port_ok = url.port != 0  # urlsplit checks the port only when asked: ask here, not in fetch()
    except ValueError:
        port_ok = False
    if not port_ok:
        parser.error(f"URL port must be a number from 1 to 65535, got {args.url!r}")
    if not 0 < args.timeout <= 86400:  # sockets raise ValueError/OverflowError outside this
        parser.error(f"--timeout must be more than 0 and at most 86400 seconds, got {args.timeout:g}")
    if args.identity is not None and (not IDENTITY_NAME.fullmatch(args.identity)
                                      or args.identity in (".", "..")):
        parser.error(f"--identity takes a name made by ./bootstrap.sh add-client, got {args.identity!r}")
    folder = HERE / args.identity if args.identity else HERE
    args.cacert = args.cacert or folder / "server-cert.pem"
    args.cert = args.cert or folder / "client-cert.pem"
    args.key = args.key or folder / "client-key.pem"
    return args


def load_context(args: argparse.Namespace) -> ssl.SSLContext:
    if args.identity and not (HERE / args.identity).is_dir():
        raise ClientError(f"no identity {args.identity!r} in {HERE / args.identity}; create it with "
                          f"./bootstrap.sh add-client {args.identity}", 2)
    for path in (args.cacert, args.cert, args.key):
        if not path.is_file():
            raise ClientError(f"missing {path}; run ./bootstrap.sh first to create the identities", 2)
    try:  # the trusted certificate alone first, so that its error names it, not our cert and key
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=str(args.cacert))
    except ssl.SSLError as exc:
        raise ClientError(f"no usable certificate in {args.cacert} ({exc.reason or exc}); it should "
                          "be a copy of the server's server-cert.pem (./bootstrap.sh makes it)", 2) from None
    try:
        return client_context(args.cacert, args.cert, args.key)
    except PermissionError as exc:
        raise ClientError(f"cannot read {exc.filename or args.key}: permission denied; "
                          "run as the user who owns the identity", 2) from None
    except ssl.SSLError as exc:
        raise ClientError(f"cannot load our identity from {args.cert} and {args.key} "
                          f"({exc.reason or exc}); do they belong together?", 2) from None


def rejected(detail: str, cert: Path) -> ClientError:
    return ClientError(f"the server rejected our client certificate ({detail}); "
                       f"is {cert} in the server's trusted set (and the server reloaded)?")


def explain_tls_error(exc: ssl.SSLError, host: str, cacert: Path, cert: Path) -> ClientError:
    """Turn an SSLError into the sentence that says which side refused whom, and the fix."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in NAME_MISMATCH_CODES:
            return ClientError(f"server certificate verification failed: it is not valid for "
                               f"{host!r}; dial a name it lists (localhost, 127.0.0.1, ::1 by "
                               f"default) or re-run ./bootstrap.sh --force --san {host}")
        return ClientError(f"server certificate verification failed: {exc.verify_message}; "
                           f"is {cacert} this server's current certificate?")
    reason = exc.reason or str(exc)
    if "ALERT_" in reason:
        alert = reason.split("ALERT_", 1)[1].lower().replace("_", " ")
        return rejected(f"TLS alert: {alert}", cert)
    return ClientError(f"TLS handshake failed: {reason.lower().replace('_', ' ')}")


def fetch(url: str, context: ssl.SSLContext, timeout: float, verbose: bool,
          cacert: Path = HERE / "server-cert.pem", cert: Path = HERE / "client-cert.pem") -> bytes:
    """GET url over mutual TLS; return the body or raise ClientError saying what went wrong
    (cacert and cert are only named in those messages)."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 443
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=timeout)
    try:
        try:
            conn.connect()  # TCP connect and TLS handshake: the server proves itself here
        except ssl.SSLError as exc:
            raise explain_tls_error(exc, host, cacert, cert) from None
        except socket.timeout as exc:
            if "handshake" in str(exc):  # TCP connected, TLS never completed
                raise ClientError(f"{host}:{port} accepted the connection but did not complete a "
                                  f"TLS handshake within {timeout:g}s; is it the HTTPS port?") from None
            raise ClientError(f"cannot reach the server at {host}:{port}: no answer within "
                              f"{timeout:g}s; is it running, and is the address right?") from None
        except OSError as exc:
            raise ClientError(f"cannot reach the server at {host}:{port}: "
                              f"{exc.strerror or exc}; is it running?") from None
        if verbose:
            describe_connection(conn.sock)
        try:
            # Under TLS 1.3 the server checks our certificate after our side finished the
            # handshake, so its refusal only surfaces here, as an alert, an EOF or a reset.
            conn.request("GET", target)
            response = conn.getresponse()
            body = response.read()
        except ssl.SSLError as exc:
            raise explain_tls_error(exc, host, cacert, cert) from None
        except (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError,
                BrokenPipeError) as exc:
            raise rejected(f"connection closed before any answer: {exc}", cert) from None
        except socket.timeout:
            raise ClientError(f"the server at {host}:{port} did not answer within {timeout:g}s") from None
        except http.client.HTTPException as exc:  # a TLS peer that is not an HTTP/1.x server
            raise ClientError(f"the server at {host}:{port} did not answer in HTTP "
                              f"({type(exc).__name__}: {str(exc).strip()!r:.60}); is this the right port?") from None
    finally:
        conn.close()
    if response.status != 200:
        raise ClientError(f"server answered {response.status} {response.reason} for {target}")
    return body


def describe_connection(tls: ssl.SSLSocket) -> None:
    subject = ", ".join(f"{k}={v}" for rdn in tls.getpeercert()["subject"] for k, v in rdn)
    print(f"* {tls.version()}, cipher {tls.cipher()[0]}", file=sys.stderr)
    print(f"* server certificate: {subject} (verified, host name matches)", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        context = load_context(args)
        if args.verbose:
            print(f"* identity: {args.identity or 'client (default)'}, certificate {args.cert}",
                  file=sys.stderr)
        body = fetch(args.url, context, args.timeout, args.verbose, args.cacert, args.cert)
    except ClientError as exc:
        print(f"client: error: {exc}", file=sys.stderr)
        return exc.exit_code
    sys.stdout.write(body.decode("utf-8", "replace") + ("" if body.endswith(b"\n") else "\n"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
