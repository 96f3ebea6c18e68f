"""How a sandbox runs as its own process: announce its URL, say `ready`, serve until told to stop."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable


def serve_until_stopped(name: str, url: str, close: Callable[[], None],
                        before_ready: Callable[[], None] = lambda: None) -> int:
    """Print `<name>: <url>` then `ready`, and block until SIGTERM or Ctrl-C; then `close()`."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    print(f"{name}: {url}", flush=True)
    try:
        before_ready()
        print("ready", flush=True)
        while not stop.wait(timeout=1):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        close()
    return 0
