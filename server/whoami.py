"""`GET /whoami`: the verified client identity, as JSON for programs."""

import json
from typing import Tuple

from tls_server import Peer


def whoami(peer: Peer) -> dict:
    """What the server knows about the caller, all of it from the verified certificate."""
    return {
        "cn": peer.cn,
        "fingerprint_sha256": peer.fingerprint,
        "not_after": peer.not_after,
        "tls_version": peer.tls_version,
        "cipher": peer.cipher,
    }


def whoami_response(peer: Peer, accept: str) -> Tuple[int, str, bytes]:
    """JSON for programs (the default)."""
    return 200, "application/json", (json.dumps(whoami(peer), indent=2) + "\n").encode()
