"""The host candidates an SDP names (`a=candidate:... typ host`), for tests that check where media may flow."""

from __future__ import annotations

import re
from collections.abc import Iterable

_HOST = re.compile(r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host")


def host_candidates(sdp: str) -> list[tuple[str, int]]:
    """(address, port) of every UDP host candidate in `sdp`, in order."""
    return [(m.group(1), int(m.group(2))) for m in _HOST.finditer(sdp)]


def host_ports(sdps: Iterable[str]) -> set[int]:
    """The ports of every UDP host candidate in `sdps`."""
    return {port for sdp in sdps for _, port in host_candidates(sdp)}
