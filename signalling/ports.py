"""A free TCP port on loopback for a child process (anvil, a test's or the benchmark's servers).

Binding to port 0 returns an *ephemeral* port: between the pick and the child's own bind, any
outgoing connection on the machine (children talk to Redis and to each other a lot) may take it as
its local port, and the child then fails to start. So the port is drawn from just below the
kernel's ephemeral range, where the kernel never assigns local ports by itself.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that is free now and outside the ephemeral range."""
    floor = _ephemeral_floor()
    low = max(1024, floor - 12000)
    for _ in range(200):
        port = random.randrange(low, floor)
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
