"""`GET /whoami`: the verified client identity, as JSON for programs and as a page for browsers."""

import html
import json
import re
from typing import Dict, List, Optional, Tuple

from peer import Peer

JSON = "application/json"
HTML = "text/html"


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
    """JSON for programs (the default); an HTML page when the Accept header prefers text/html."""
    if prefers_html(accept):
        return 200, "text/html; charset=utf-8", whoami_page(whoami(peer)).encode()
    return 200, JSON, (json.dumps(whoami(peer), indent=2) + "\n").encode()


# -- content negotiation ---------------------------------------------------------------------------

def parse_accept(accept: str) -> List[Tuple[str, str, float]]:
    """The media ranges of an Accept header as (type, subtype, q); malformed ranges are ignored."""
    ranges = []
    for item in accept.split(","):
        media, *params = [part.strip() for part in item.split(";")]
        kind, slash, subtype = media.lower().partition("/")
        if not (slash and kind and subtype) or (kind == "*" and subtype != "*"):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                q = parse_qvalue(value.strip())
        if q is not None:
            ranges.append((kind, subtype, q))
    return ranges


def parse_qvalue(value: str) -> Optional[float]:
    """An RFC 9110 qvalue ('0', '0.8', '1.000') as a float, or None when it is not one."""
    if re.fullmatch(r"0(\.\d{0,3})?|1(\.0{0,3})?", value):
        return float(value)
    return None


def quality(media_type: str, ranges: List[Tuple[str, str, float]]) -> float:
    """The q the client gives media_type: from its most specific matching range (RFC 9110 12.5.1)."""
    kind, _, subtype = media_type.partition("/")
    best: Dict[int, float] = {}
    for r_kind, r_subtype, q in ranges:
        if (r_kind, r_subtype) == (kind, subtype):
            specificity = 2
        elif (r_kind, r_subtype) == (kind, "*"):
            specificity = 1
        elif (r_kind, r_subtype) == ("*", "*"):
            specificity = 0
        else:
            continue
        best[specificity] = max(q, best.get(specificity, 0.0))
    return best[max(best)] if best else 0.0


def prefers_html(accept: str) -> bool:
    """True only when the client ranks text/html strictly above JSON (a browser); ties get JSON."""
    ranges = parse_accept(accept or "*/*")
    return quality(HTML, ranges) > quality(JSON, ranges)


# -- the page --------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>You are {cn}</title>
<style>
  body {{ font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f4f6f8; color: #1d2329; }}
  main {{ max-width: 46rem; margin: 2.5rem auto; padding: 1.5rem 2rem; background: #fff;
          border-radius: 10px; box-shadow: 0 1px 4px rgba(0, 0, 0, .12); }}
  h1 {{ font-size: 1.6rem; margin: 0 0 .25rem; }}
  p.lead {{ margin: 0 0 1.25rem; color: #3c6e47; }}
  dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .45rem 1.25rem; margin: 0; }}
  dt {{ font-weight: 600; color: #55606b; }}
  dd {{ margin: 0; font-family: ui-monospace, monospace; overflow-wrap: break-word; }}
  footer {{ margin-top: 1.25rem; font-size: .85rem; color: #6b7580; }}
</style>
</head>
<body>
<main>
<h1>You are <span id="cn">{cn}</span></h1>
<p class="lead">&#x2714; Your browser proved this identity with its client certificate.</p>
<dl>
  <dt>Common name (CN)</dt><dd>{cn}</dd>
  <dt>SHA-256 fingerprint</dt><dd id="fingerprint">{fingerprint}</dd>
  <dt>Expires (not after)</dt><dd>{not_after}</dd>
  <dt>TLS version</dt><dd>{tls_version}</dd>
  <dt>Cipher</dt><dd>{cipher}</dd>
</dl>
<footer>Compare the fingerprint with <code>./bootstrap.sh list</code>.
Programs get JSON from the same URL (<code>curl ... /whoami</code>).</footer>
</main>
</body>
</html>
"""


def colon_hex_html(fingerprint: str) -> str:
    """'ab12...' as 'AB:12:...' (the form `./bootstrap.sh list` and browsers show), allowed to wrap
    only after a colon; anything that is not 64 hex digits is just escaped."""
    if re.fullmatch(r"[0-9a-fA-F]{64}", fingerprint):
        return ":<wbr>".join(fingerprint[i:i + 2].upper() for i in range(0, 64, 2))
    return html.escape(fingerprint)


def whoami_page(me: dict) -> str:
    """A small self-contained HTML page (inline CSS, no external assets); every value escaped."""
    fields = {key: html.escape(str(me[key])) for key in ("cn", "not_after", "tls_version", "cipher")}
    return PAGE.format(fingerprint=colon_hex_html(str(me["fingerprint_sha256"])), **fields)
