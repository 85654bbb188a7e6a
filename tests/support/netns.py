"""An emulated network link: a network namespace of the test's own, joined to the test's by a veth pair.

The test process (already in a private namespace with only loopback, as `make test` runs it) is the
server side, `SERVER_IP`; programs started with `Link.command(...)` run in the other namespace,
`CLIENT_IP`, and everything between the two crosses the veth pair, where the test can fail it.
Both addresses live only inside namespaces the test made; nothing can leave the machine.

This kernel has no netem and no drop action (`tc` gives "qdisc kind is unknown"), so an outage is a
token bucket (tbf) that holds a single byte: every packet is larger than its burst and is dropped
silently, in both directions, as on a dead radio link (no error reaches either side's sockets).

`block_udp()` is narrower and lasting: nftables rules in the client namespace (nft's drop does work
here) drop every UDP packet that enters or leaves it, so its programs must fall back to TCP (ICE-TCP,
TURN over TCP or TLS) while TCP still flows. A dropped send fails locally with EPERM ("Operation not
permitted"); what arrives is dropped silently. UDP on the client's own loopback is left alone.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import subprocess
import time

SERVER_IP = "10.201.0.1"
CLIENT_IP = "10.201.0.2"
_names = itertools.count()
UDP_BLOCK_TABLE = "basement_block"  # an `inet` table (IPv4 and IPv6) in the client namespace


def _ip(*args: str, netns_pid: int | None = None) -> None:
    prefix = ["nsenter", "-t", str(netns_pid), "-n"] if netns_pid else []
    subprocess.run([*prefix, *args], check=True, capture_output=True, timeout=10)


class Link:
    def __init__(self) -> None:
        n = next(_names)
        self.server_dev, self.client_dev = f"bsm{n}s", f"bsm{n}c"
        self.holder: subprocess.Popen | None = None
        self.client_ip = CLIENT_IP
        self.down_since: float | None = None

    @property
    def pid(self) -> int:
        assert self.holder is not None, "start() first"
        return self.holder.pid

    def start(self) -> Link:
        # the namespace lives as long as this process (the veth pair goes with it)
        self.holder = namespace_holder()
        _ip("ip", "link", "add", "name", self.server_dev, "type", "veth", "peer", "name", self.client_dev)
        _ip("ip", "link", "set", self.client_dev, "netns", str(self.pid))
        # No IPv6 link-local addresses on the pair: the kernel would add them a second or two after
        # the link comes up (duplicate address detection), and that late address change is a
        # "network change" to Chromium, which then fails whatever it is loading with
        # ERR_NETWORK_CHANGED (seen: a page in the namespace missing one of its modules)
        _ip("ip", "link", "set", "dev", self.server_dev, "addrgenmode", "none")
        _ip("ip", "link", "set", "dev", self.client_dev, "addrgenmode", "none", netns_pid=self.pid)
        _ip("ip", "addr", "add", f"{SERVER_IP}/24", "dev", self.server_dev)
        _ip("ip", "link", "set", self.server_dev, "up")
        for args in (("ip", "link", "set", "lo", "up"),
                     ("ip", "addr", "add", f"{CLIENT_IP}/24", "dev", self.client_dev),
                     ("ip", "link", "set", self.client_dev, "up")):
            _ip(*args, netns_pid=self.pid)
        return self

    def readdress(self, address: str) -> None:
        """Give the client side a new address and take the old one away, as a phone moving to another
        network does: its sockets on the old address are dead from now on (TCP ones included)."""
        # (old first: a second address in the subnet is a "secondary", and deleting the primary would
        # take it along)
        _ip("ip", "addr", "del", f"{self.client_ip}/24", "dev", self.client_dev, netns_pid=self.pid)
        _ip("ip", "addr", "add", f"{address}/24", "dev", self.client_dev, netns_pid=self.pid)
        self.client_ip = address

    def block_udp(self) -> None:
        """Drop every UDP packet into and out of the client namespace (see the module docstring) until
        `unblock_udp()`; TCP is untouched. Needs nft (Debian's nftables)."""
        self.unblock_udp()  # idempotent: never two copies of the table
        chains = "; ".join(
            f"chain {hook} {{ type filter hook {hook} priority 0; policy accept; "
            f"{'iifname' if hook == 'input' else 'oifname'} \"lo\" accept; meta l4proto udp drop; }}"
            for hook in ("input", "output"))
        _ip("nft", f"table inet {UDP_BLOCK_TABLE} {{ {chains}; }}", netns_pid=self.pid)

    def unblock_udp(self) -> None:
        subprocess.run(["nsenter", "-t", str(self.pid), "-n", "nft", "delete", "table", "inet", UDP_BLOCK_TABLE],
                       capture_output=True, timeout=10)  # absent already: nothing to do

    def command(self, *args: str) -> list[str]:
        """`args` to run in the client namespace."""
        return ["nsenter", "-t", str(self.pid), "-n", *args]

    def limit(self, rate_bps: int | None, queue_ms: int = 250, uplink: bool = False) -> None:
        """Limit what the server sends the client to `rate_bps` (a token bucket on the server's side
        of the pair, holding `queue_ms` of it before dropping, as an access link's buffer does), or
        with `uplink` what the client sends the server (the same on the client's side); None lifts
        the limit."""
        dev, pid = (self.client_dev, self.pid) if uplink else (self.server_dev, None)
        subprocess.run([*(self.command() if uplink else []), "tc", "qdisc", "del", "dev", dev, "root"],
                       capture_output=True, timeout=10)
        if rate_bps is None:
            return
        queue = max(rate_bps * queue_ms // 8000, 3000)
        _ip("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", f"{rate_bps}bit",
            "burst", "3000", "limit", str(queue), netns_pid=pid)

    def dropped(self) -> int:
        """Packets the limit on the server's side dropped so far (its queue was full), from `tc -s`;
        0 without a limit. Counts from the last `limit()`, which sets up a new one."""
        out = subprocess.run(["tc", "-s", "qdisc", "show", "dev", self.server_dev], capture_output=True,
                             text=True, timeout=10).stdout
        m = re.search(r"dropped (\d+)", out)
        return int(m.group(1)) if m else 0

    def down(self) -> None:
        """Lose every packet both ways from now on (see the module docstring)."""
        for dev, pid in ((self.server_dev, None), (self.client_dev, self.pid)):
            _ip("tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate", "8bit", "burst", "1", "limit", "1",
                netns_pid=pid)
        self.down_since = time.monotonic()

    def up(self) -> None:
        for dev, pid in ((self.server_dev, None), (self.client_dev, self.pid)):
            _ip("tc", "qdisc", "del", "dev", dev, "root", netns_pid=pid)
        self.down_since = None

    async def outage(self, seconds: float) -> None:
        self.down()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.up()

    def stop(self) -> None:
        if self.holder is not None and self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait()
        subprocess.run(["ip", "link", "del", self.server_dev], capture_output=True, timeout=10)


def namespace_holder() -> subprocess.Popen:
    """A process in a network namespace of its own (only loopback, down), once it is there."""
    holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"])
    deadline = time.monotonic() + 5
    while _netns_of(holder.pid) == _netns_of("self"):  # unshare has not switched yet
        if time.monotonic() > deadline:
            holder.kill()
            raise RuntimeError("the client network namespace did not appear")
        time.sleep(0.01)
    return holder


def _netns_of(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")
