"""`python -m bench.bandwidth`: run one scenario in both modes, print its table, write its samples
and plot (see the package docstring)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bandwidth import common, downlink, fairness, keyframes, loss, uplink  # noqa: E402

SCENARIOS = {"downlink": downlink, "uplink": uplink, "fairness": fairness, "loss": loss, "keyframes": keyframes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bandwidth estimation over time on emulated links (issue #15).")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="downlink")
    parser.add_argument("--json", help="write the samples here")
    parser.add_argument("--plot", help="write a chart (PNG) here")
    parser.add_argument("--transport-cc-only", action="store_true", help="skip the REMB-only run")
    args = parser.parse_args(argv)
    scenario = SCENARIOS[args.scenario]
    tmp = Path(tempfile.mkdtemp(prefix="basement-bw-"))

    async def both() -> dict[str, list[dict]]:
        results: dict[str, list[dict]] = {}
        for mode, on in common.MODES:
            if on or not args.transport_cc_only:
                results[mode] = await scenario.run(on, tmp)
        return results

    results = asyncio.run(both())
    for mode, samples in results.items():
        for row in scenario.summary(mode, samples):
            print(row)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.plot:
        scenario.plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
