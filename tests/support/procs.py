"""Child processes the tests start (servers, daemons): stopped politely, then for sure."""

from __future__ import annotations

import signal
import subprocess


def stop(proc: subprocess.Popen | None, timeout_s: float = 15.0) -> None:
    """SIGTERM (a daemon saves its state and closes its sockets), then SIGKILL after `timeout_s`."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
