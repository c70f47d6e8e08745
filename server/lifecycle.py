"""Signals drive the server's life: SIGHUP reloads identity and trust, SIGINT/SIGTERM stop it.

Signal handlers only record what was asked; the main thread does the work, so a reload never runs
in the middle of another one and a stop waits for nothing but the accept loop and in-flight requests.
"""

import logging
import signal
import threading
import time
from typing import Callable, Tuple

log = logging.getLogger("mtls")


class Lifecycle:
    """What the signals asked for, waited on by the main thread."""

    def __init__(self):
        self.wake = threading.Event()
        self.stop_requested = False
        self.reload_requested = False

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGTERM, self._stop)
        if hasattr(signal, "SIGHUP"):  # not on Windows
            signal.signal(signal.SIGHUP, self._reload)

    def _stop(self, signum, frame) -> None:
        self.stop_requested = True
        self.wake.set()

    def _reload(self, signum, frame) -> None:
        self.reload_requested = True
        self.wake.set()


def reload(server, load: Callable[[], Tuple[object, object]]) -> None:
    """Build a new context and trusted set; on any failure keep serving with the old ones."""
    started = time.monotonic()
    try:
        context, trusted = load()
    except Exception as exc:  # noqa: BLE001 - a broken file must never take the server down
        log.error("reload failed, keeping the previous configuration: %s", exc)
        return
    server.replace_trust(context, trusted)
    log.info("reloaded: trusting %d client certificate(s) (%.0f ms); new connections use them",
             len(trusted), (time.monotonic() - started) * 1000)


def serve_until_stopped(server, load: Callable[[], Tuple[object, object]],
                        on_ready: Callable[[], None] = lambda: None) -> bool:
    """Run the event loop in a thread; reload on SIGHUP; on SIGINT/SIGTERM drain and close.
    Returns False if the event loop died on its own (a bug): the caller exits non-zero."""
    life = Lifecycle()
    life.install()
    loop = threading.Thread(target=server.serve_forever, name="event-loop", daemon=True)
    loop.start()
    on_ready()
    while not life.stop_requested and loop.is_alive():
        # A timeout keeps the loop responsive even where a signal cannot interrupt the wait.
        life.wake.wait(0.5)
        life.wake.clear()
        if life.reload_requested:
            life.reload_requested = False
            reload(server, load)
    healthy = loop.is_alive()
    if not healthy:
        log.error("the event loop stopped unexpectedly; exiting")
    server.shutdown()  # stops accepting, lets requests in flight finish, bounded
    loop.join()
    server.server_close()
    return healthy
