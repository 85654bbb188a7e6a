"""Bandwidth estimation over time, on emulated links (issue #15): each scenario run once with the
SFU's transport-wide congestion control (the default) and once with `transport_cc=false` (REMB
only), sampled every 0.25-1 s, with a table per phase on stdout and a plot of estimate, allocated
and actual rates.

    unshare -rn -- bash -c 'ip link set lo up && exec "$@"' x \\
        .venv/bin/python -m bench.bandwidth --scenario downlink --json bw.json --plot docs/bench-bandwidth.png

Scenarios (one module each):
- `downlink`: a Chromium subscriber behind a link of 600 kbit/s, then 5 Mbit/s, then 300 kbit/s;
- `uplink`: a Chromium publisher behind an uplink of 500 kbit/s, then none, then 300 kbit/s;
- `fairness`: two Chromium subscribers behind one 1.5 Mbit/s link, then a TCP download beside them;
- `loss`: a Chromium subscriber behind 3 % random loss each way and 80 ms of round trip.

Links are tests/support/netns.py (veth and a token bucket) and tests/support/impaired_link.py (loss
and delay in user space); every address lives in namespaces the run made.
"""
