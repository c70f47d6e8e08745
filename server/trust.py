"""The server's trusted set: exactly the client certificates it was given, like SSH's authorized_keys.

OpenSSL treats every trusted certificate as a possible issuer, so a CA certificate that slipped into
the set would let everything it signed in. The server therefore also pins each peer by the SHA-256
fingerprint of its exact certificate; this module computes those fingerprints.
"""

import hashlib
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import FrozenSet, Iterable, List

PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----\r?\n.+?\r?\n-----END CERTIFICATE-----", re.S)


class TrustError(Exception):
    """A trusted-certificate path is missing, unreadable or holds no certificate."""


@dataclass(frozen=True)
class TrustedSet:
    """The PEM text handed to OpenSSL and the fingerprints checked after each handshake."""

    pem: str
    fingerprints: FrozenSet[str]

    def __len__(self) -> int:
        return len(self.fingerprints)

    def __contains__(self, fingerprint: str) -> bool:
        return fingerprint in self.fingerprints


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as lowercase hex, the form `/whoami` and the logs show."""
    return hashlib.sha256(der).hexdigest()


def pem_files(path: Path) -> List[Path]:
    """A PEM bundle is itself; a directory contributes its *.pem files in name order."""
    if path.is_dir():
        return sorted(p for p in path.glob("*.pem") if p.is_file())
    if not path.is_file():
        raise TrustError(f"trusted client certificates not found: {path}")
    return [path]


def certificates_in(path: Path) -> List[str]:
    """Every PEM certificate block in one file; a file without one is an error, not an empty trust."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise TrustError(f"cannot read {path}: {exc}") from None
    blocks = PEM_CERT.findall(text)
    if not blocks:
        raise TrustError(f"no PEM certificate in {path}")
    return blocks


def load_trusted_set(paths: Iterable[Path]) -> TrustedSet:
    """Read PEM bundles and directories of *.pem files into one TrustedSet."""
    sources = tuple(Path(p) for p in paths)
    blocks, fingerprints = [], set()
    for source in sources:
        for pem_file in pem_files(source):
            for block in certificates_in(pem_file):
                try:
                    der = ssl.PEM_cert_to_DER_cert(block)
                except ValueError as exc:
                    raise TrustError(f"broken certificate in {pem_file}: {exc}") from None
                blocks.append(block)
                fingerprints.add(fingerprint(der))
    if not blocks:
        raise TrustError("no trusted client certificates in " + ", ".join(map(str, sources)))
    return TrustedSet("\n".join(blocks) + "\n", frozenset(fingerprints))
