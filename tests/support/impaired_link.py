"""A link with random loss and delay, for a kernel without netem: two TUN devices and a relay between them.

`netns.Link` joins the test's namespace to a client namespace by a veth pair, which can be rate-limited
(tbf) and cut, but not delayed or made lossy: this kernel has no netem (`tc` says "qdisc kind is
unknown"). Here the two namespaces are joined instead by a point-to-point TUN device in each, and a
relay process (this module's `main`, run inside the client namespace) carries every IP packet between
them: it drops each with the given probability, from a seeded random generator per direction (the same
pattern in every run), and delivers the rest after the given one-way delay, in order. Everything the
two sides exchange (UDP, TCP, ICMP) crosses it, as on a real path. The addresses are `netns.SERVER_IP`
and `netns.CLIENT_IP`, which live only inside namespaces the test made.

The relay is Python: it carries a few thousand packets a second, plenty for one or two video
subscribers, with ~1 ms of timing error. It prints what it relayed and dropped when it ends.
"""

from __future__ import annotations

import fcntl
import heapq
import os
import random
import selectors
import signal
import struct
import subprocess
import sys
import time

from tests.support.netns import CLIENT_IP, SERVER_IP, _ip, _names, namespace_holder

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


def open_tun(name: str) -> int:
    """A TUN device `name` in the calling process's network namespace (gone when the fd closes)."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class ImpairedLink:
    """The client namespace, behind `loss` (a probability, each direction) and `delay_ms` (one way)."""

    def __init__(self, loss: float = 0.03, delay_ms: float = 40.0, seed: int = 15) -> None:
        n = next(_names)
        self.server_dev, self.client_dev = f"bsm{n}ts", f"bsm{n}tc"
        self.loss, self.delay_ms, self.seed = loss, delay_ms, seed
        self.holder: subprocess.Popen | None = None
        self.relay: subprocess.Popen | None = None
        self.server_fd: int | None = None
        self.client_ip = CLIENT_IP

    @property
    def pid(self) -> int:
        assert self.holder is not None, "start() first"
        return self.holder.pid

    def start(self) -> ImpairedLink:
        self.holder = namespace_holder()
        self.server_fd = open_tun(self.server_dev)
        self.relay = subprocess.Popen(
            self.command(sys.executable, "-m", "tests.support.impaired_link", str(self.server_fd), self.client_dev,
                         str(self.loss), str(self.delay_ms), str(self.seed)),
            pass_fds=(self.server_fd,), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 10
        while subprocess.run(self.command("ip", "link", "show", self.client_dev), capture_output=True).returncode:
            if self.relay.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the relay did not start: {self.relay.communicate()[0]}")
            time.sleep(0.02)
        # (no IPv6 link-local addresses: see netns.Link.start)
        _ip("ip", "link", "set", "dev", self.server_dev, "addrgenmode", "none")
        _ip("ip", "addr", "add", SERVER_IP, "peer", CLIENT_IP, "dev", self.server_dev)
        _ip("ip", "link", "set", self.server_dev, "up")
        for args in (("ip", "link", "set", "lo", "up"),
                     ("ip", "link", "set", "dev", self.client_dev, "addrgenmode", "none"),
                     ("ip", "addr", "add", CLIENT_IP, "peer", SERVER_IP, "dev", self.client_dev),
                     ("ip", "link", "set", self.client_dev, "up")):
            _ip(*args, netns_pid=self.pid)
        return self

    def command(self, *args: str) -> list[str]:
        """`args` to run in the client namespace."""
        return ["nsenter", "-t", str(self.pid), "-n", *args]

    def stop(self) -> str:
        """Ends the relay and the namespace; what the relay counted."""
        report = ""
        if self.relay is not None and self.relay.poll() is None:
            self.relay.send_signal(signal.SIGTERM)
            try:
                report = self.relay.communicate(timeout=5)[0]
            except subprocess.TimeoutExpired:
                self.relay.kill()
                report = self.relay.communicate()[0]
        if self.holder is not None and self.holder.poll() is None:
            self.holder.kill()
            self.holder.wait()
        if self.server_fd is not None:
            os.close(self.server_fd)
            self.server_fd = None
        return report.strip()


class Direction:
    def __init__(self, name: str, into: int, loss: float, delay_s: float, seed: int) -> None:
        self.name, self.into, self.loss, self.delay_s = name, into, loss, delay_s
        self.random = random.Random(seed)
        self.relayed = self.dropped = self.failed = 0

    def take(self, packet: bytes, now: float, queue: list, serial: int) -> None:
        if self.random.random() < self.loss:
            self.dropped += 1
            return
        heapq.heappush(queue, (now + self.delay_s, serial, self, packet))

    def deliver(self, packet: bytes) -> None:
        try:
            os.write(self.into, packet)
            self.relayed += 1
        except (BlockingIOError, OSError):  # the device's queue is full or it went down: a loss too
            self.failed += 1


def main(argv: list[str]) -> None:
    server_fd, client_dev = int(argv[0]), argv[1]
    loss, delay_s, seed = float(argv[2]), float(argv[3]) / 1000, int(argv[4])
    client_fd = open_tun(client_dev)
    down = Direction("down", client_fd, loss, delay_s, seed)  # server -> client
    up = Direction("up", server_fd, loss, delay_s, seed + 1)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    selector = selectors.DefaultSelector()
    selector.register(server_fd, selectors.EVENT_READ, down)
    selector.register(client_fd, selectors.EVENT_READ, up)
    queue: list = []
    serial = 0
    while not stopping:
        timeout = max(0.0, queue[0][0] - time.monotonic()) if queue else 0.5
        try:
            events = selector.select(timeout)
        except InterruptedError:
            continue
        now = time.monotonic()
        for key, _ in events:
            direction = key.data
            for _ in range(64):
                try:
                    packet = os.read(key.fd, 65536)
                except (BlockingIOError, OSError):
                    break
                serial += 1
                direction.take(packet, now, queue, serial)
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, direction, packet = heapq.heappop(queue)
            direction.deliver(packet)
    for d in (down, up):
        print(f"{d.name}: relayed {d.relayed}, dropped {d.dropped}, failed {d.failed}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
