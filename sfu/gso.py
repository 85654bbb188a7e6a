"""Which queued datagrams leave as one segmented UDP send (Linux UDP_SEGMENT, "GSO").

An Egress flush on the native data path (`sfu/native/gso.c`, `sfu/native/forward.c`) sends what one
received batch queued for one subscriber. Runs of datagrams of equal length (the last one may be
shorter, as the kernel's last segment may be) go to the kernel as one buffer that it cuts into
datagrams, so the IP path is walked once per run. This is the rule's pure-Python twin: the unit
tests and the fuzz harness check that `sfu._native.gso_runs` answers the same.
"""

from __future__ import annotations

from collections.abc import Sequence

# as sfu/native/forward.h: UDP_MAX_SEGMENTS of the oldest kernels with UDP_SEGMENT (4.18), and a
# run's bytes under the 64 KiB one unsegmented IP packet can hold
MAX_SEGMENTS = 64
MAX_BYTES = 60000


def runs(lengths: Sequence[int]) -> list[int]:
    """The queue `lengths` (in send order) split into runs one segmented send can carry: how many
    datagrams each run has. Order is kept; a run of one is an ordinary send."""
    out: list[int] = []
    i, n = 0, len(lengths)
    while i < n:
        size = total = lengths[i]
        j = i + 1
        while j < n and j - i < MAX_SEGMENTS and lengths[j] == size and total + lengths[j] <= MAX_BYTES:
            total += lengths[j]
            j += 1
        if j < n and j - i < MAX_SEGMENTS and lengths[j] < size and total + lengths[j] <= MAX_BYTES:
            j += 1
        out.append(j - i)
        i = j
    return out
