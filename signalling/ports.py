"""A free TCP port on loopback for a child process (anvil, a test's or the benchmark's servers).

Binding to port 0 returns an *ephemeral* port: between the pick and the child's own bind, any
outgoing connection on the machine (children talk to Redis and to each other a lot) may take it as
its local port, and the child then fails to start. So the port is drawn from just below the
kernel's ephemeral range, where the kernel never assigns local ports by itself.

Processes that pick ports side by side (the test runner's workers, `make test`) each draw from their
own slice of that range, so that two of them never pick the same port before either binds it:
`BASEMENT_PORT_SLICE=<i>/<n>` (slice i of n, from 0; children inherit it). Not a server setting.
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports handed out by this process. A port is only free *now*: until its child binds it, another
# free_port() call would find it free too (a cluster test picks ten before any child starts, and one
# such pair made `basement signal` fail with EADDRINUSE). So a port is never handed out twice.
_given: set[int] = set()


def _range() -> tuple[int, int]:
    """[low, high) to draw from: below the ephemeral range, this process's slice of it."""
    high = _ephemeral_floor()
    low = max(1024, high - 12000)
    try:
        i, n = (int(v) for v in os.environ.get("BASEMENT_PORT_SLICE", "0/1").split("/"))
    except ValueError:
        raise ValueError(f"BASEMENT_PORT_SLICE={os.environ['BASEMENT_PORT_SLICE']!r}: expected <i>/<n>") from None
    if not 0 <= i < n:
        raise ValueError(f"BASEMENT_PORT_SLICE={i}/{n}: the slice must be one of 0..{n - 1}")
    width = (high - low) // n
    return low + i * width, low + (i + 1) * width


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that is free now, outside the ephemeral range, and not handed out before
    by this process."""
    low, floor = _range()
    for _ in range(200):
        port = random.randrange(low, floor)
        if port in _given:
            continue
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        if len(_given) >= (floor - low) // 2:
            _given.clear()  # a long-lived process: forget old ports rather than run out
        _given.add(port)
        return port
    raise RuntimeError("no free port below the ephemeral range")
