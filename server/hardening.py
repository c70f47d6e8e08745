"""Start-up checks that refuse an unsafe configuration before the server accepts a connection."""

import os
import shlex
import stat
from pathlib import Path
from typing import List, Optional

PERMISSIONS = (("readable", stat.S_IROTH), ("writable", stat.S_IWOTH), ("executable", stat.S_IXOTH))


def insecure_key_mode(path: Path) -> Optional[str]:
    """None if only the owner can use the private key file, else the one-line error naming the fix:
    a key other local users can read is no longer private, so, like ssh, refuse to use it."""
    if os.name == "nt":  # Windows has ACLs, not mode bits: st_mode says nothing about other users
        return None
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)  # follows symlinks: the key's own file counts
    except OSError:
        return None  # missing or unreadable: the loader reports that, with its own fix
    if mode & 0o077 == 0:
        return None
    grants = {}  # "readable and writable" -> ["group", "others"]
    for who, shift in (("group", 3), ("others", 0)):
        allowed = [word for word, bit in PERMISSIONS if mode & (bit << shift)]
        if allowed:
            grants.setdefault(plain_list(allowed), []).append(who)
    access = ", ".join(f"{words} by {' and '.join(whom)}" for words, whom in grants.items())
    return (f"{path} is {access} (mode {mode:04o}); "
            f"fix: chmod 600 {shlex.quote(str(path))}")


def plain_list(words: List[str]) -> str:
    """['readable', 'writable', 'executable'] as 'readable, writable and executable'."""
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
