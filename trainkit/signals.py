"""SIGINT/SIGTERM as stop requests: the one handler pattern a run, a worker pool and a
data-parallel rank share."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable


@contextlib.contextmanager
def on_stop_signals(callback: Callable[[str], None]):
    """Within the block, SIGINT/SIGTERM call `callback(name)` ("SIGINT"/"SIGTERM") instead of
    ending the process; the previous handlers come back after. Off the main thread, where
    Python cannot install handlers, the block runs without them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        callback(signal.Signals(signum).name)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
