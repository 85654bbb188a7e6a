"""Which remote ICE candidates the SFU may send connectivity checks to (issue #11).

A client names its candidates; the SFU then sends STUN checks to every one of them. Unscreened,
that lets a client point the SFU at hosts on the SFU's own networks (or anywhere, 300 at a time).
So each transport accepts a limited number of remote candidates, and only addresses in allowed
ranges. The rule for `auto` (the default):

* public (globally routable) addresses are always allowed;
* loopback, link-local and private addresses (RFC 1918, CGNAT 100.64/10, IPv6 ULA, ...) are allowed
  only if the SFU itself gathers on an address of the same scope: an SFU on 127.0.0.1 talks to
  loopback clients, an SFU on 10.1.2.3 to private ones, an SFU on a public address to neither
  (with `ice_addresses` 'auto', the addresses of every interface but loopback; gathering on
  0.0.0.0 or :: counts as being on every scope);
* multicast, unspecified (0.0.0.0, ::), broadcast and reserved addresses are never allowed.

Explicit CIDR ranges add to `auto`, or replace it when `auto` is not in the list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

PUBLIC, PRIVATE, LOOPBACK, LINK_LOCAL, INVALID = "public", "private", "loopback", "link-local", "invalid"


def scope(addr: Address) -> str:
    """The reachability class of an address, as the `auto` rule uses it."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_multicast or addr.is_unspecified:
        return INVALID
    if addr.is_loopback:
        return LOOPBACK
    if addr.is_link_local:
        return LINK_LOCAL
    if isinstance(addr, ipaddress.IPv4Address) and addr.is_reserved:  # 240/4, broadcast
        return INVALID
    return PUBLIC if addr.is_global else PRIVATE


def parse_ranges(ranges: Iterable[str]) -> tuple[bool, tuple[Network, ...]]:
    """('auto' present, the CIDR ranges); raises ValueError naming a bad entry."""
    auto = False
    networks: list[Network] = []
    for r in ranges:
        r = r.strip()
        if not r:
            continue
        if r == "auto":
            auto = True
            continue
        try:
            networks.append(ipaddress.ip_network(r, strict=False))
        except ValueError:
            raise ValueError(f"{r!r} is neither 'auto' nor an address range (CIDR)") from None
    return auto, tuple(networks)


@dataclass(frozen=True)
class CandidatePolicy:
    """Pure decision: may the SFU send checks to this address? (No I/O, no aiortc.)"""

    max_remote: int = 32
    auto: bool = True
    networks: tuple[Network, ...] = ()
    local_scopes: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def make(cls, ranges: Iterable[str], max_remote: int, local_addresses: Iterable[str]) -> CandidatePolicy:
        auto, networks = parse_ranges(ranges)
        scopes = set()
        for a in local_addresses:
            try:
                kind = scope(ipaddress.ip_address(a.split("%", 1)[0]))
            except ValueError:
                continue
            # 0.0.0.0 / :: binds every interface, loopback included: the SFU is on every network
            scopes |= {PUBLIC, PRIVATE, LOOPBACK, LINK_LOCAL} if kind == INVALID else {kind}
        return cls(max_remote, auto, networks, frozenset(scopes))

    def refusal(self, host: str) -> str | None:
        """None if checks to `host` (an IP address) are allowed, else why not."""
        try:
            addr = ipaddress.ip_address(host.split("%", 1)[0])  # drop an IPv6 zone id
        except ValueError:
            return f"{host!r} is not an IP address"
        kind = scope(addr)
        if kind == INVALID:
            return f"{host} is a multicast, unspecified or reserved address"
        plain = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped else addr
        if any(plain.version == n.version and plain in n for n in self.networks):
            return None
        if self.auto and (kind == PUBLIC or kind in self.local_scopes):
            return None
        if self.auto:
            return f"{host} is a {kind} address and this server is not on a {kind} network"
        return f"{host} is outside the allowed candidate ranges"


CandidateKey = tuple[str, int, str]  # (address or mDNS name, port, transport protocol)


class CandidateScreen:
    """One transport's remote candidates: the distinct ones taken (at most `max_remote`, so this
    set is bounded too) and how many were refused."""

    def __init__(self, policy: CandidatePolicy) -> None:
        self.policy = policy
        self.seen: set[CandidateKey] = set()
        self.refused = 0

    @property
    def accepted(self) -> int:
        return len(self.seen)

    def over_limit(self) -> bool:
        return len(self.seen) >= self.policy.max_remote
