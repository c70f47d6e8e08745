"""The access log: one line per request, cheap enough for the hot path.

`logging` costs about 15 µs a record (a LogRecord, caller lookup, a lock, a flush each time), as
much as the rest of a keep-alive request. Access lines are formatted here instead, in the same
shape as the server's other log lines, and written in one batch per event-loop pass.
"""

import sys
import time
from typing import List, Optional, TextIO


class AccessLog:
    """Collects request lines; `flush()` writes them at once (the event loop calls it each pass)."""

    def __init__(self, stream: Optional[TextIO] = None):
        self.stream = stream
        self.lines: List[str] = []
        self._second = -1
        self._stamp = ""

    def request(self, peer_name: str, cn: str, request_line: str, status: int) -> None:
        self.lines.append(f'{self._now()} {peer_name} CN={cn} "{request_line}" {status}\n')

    def flush(self) -> None:
        if not self.lines:
            return
        lines, self.lines = self.lines, []
        try:
            stream = self.stream or sys.stderr
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):
            pass  # the log's reader is gone (a closed pipe): serving matters more than logging

    def _now(self) -> str:
        """'2026-12-04 21:22:42,431', as logging's asctime writes it; the date part cached."""
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp},{int((now - second) * 1000):03d}"
