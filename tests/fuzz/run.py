"""Run the atheris harnesses: `make fuzz` and the smoke test both go through here.

Each harness runs in its own process, from a scratch copy of its committed seed corpus (libFuzzer
adds new inputs to the first corpus directory; the committed one stays as generated). A crash,
hang (-timeout) or memory blow-up (-rss_limit_mb) is a finding: the reproducer is saved under
<findings>/<harness>/ with a name made from the exception and where it was raised, and the run
fails. With --keep-going the harness is restarted after a finding until its run budget is spent,
so one open finding does not stop the search for others; every finding is still reported.

libFuzzer's -timeout is wall-clock time, and `make fuzz` runs at the lowest priority: on a busy
machine a unit can wait longer than the timeout without hanging. A timeout is therefore replayed
alone, at normal priority, with the same limit; only one that times out again is a finding. One
that does not is counted (`starved`) and the harness carries on from where it was.

    .venv/bin/python tests/fuzz/run.py --runs 1000000            # every harness, a million inputs each
    .venv/bin/python tests/fuzz/run.py --max-time 20 rtp sdp     # time-boxed, two harnesses
    .venv/bin/python tests/fuzz/fuzz_sdp.py tests/fuzz/findings/sdp/<name>   # replay one reproducer
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESSES = ("rtp", "ingress", "rtcp", "sdp", "protocol", "siwe", "gating", "bus", "safejson", "native", "data",
             "rpc", "stun", "relay", "sip")
# inputs larger than a datagram / a message teach the fuzzer nothing the limits don't already refuse
MAX_LEN = {"rtp": 1500, "ingress": 4096, "rtcp": 1500, "sdp": 8192, "protocol": 8192, "siwe": 2048,
           "gating": 4096, "bus": 4096, "safejson": 4097, "native": 4096, "data": 8192, "rpc": 8192,
           "stun": 4096, "relay": 8192, "sip": 8192}
MAX_RESTARTS = 20
TIMEOUT_S = 10  # per input, libFuzzer's -timeout

_DONE = re.compile(r"^Done (\d+) runs in (\d+) second")
_STAT = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+).*?exec/s: (\d+)", re.M)
_ARTIFACT = re.compile(r"Test unit written to (\S+)")
_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


@dataclass
class Finding:
    name: str  # reproducer file name under <findings>/<harness>/
    kind: str  # crash | timeout | oom
    summary: str  # exception line
    where: str  # innermost frame in our code: path:line
    runs_at: int  # total inputs run when it was hit


@dataclass
class Result:
    harness: str
    runs: int = 0
    seconds: float = 0.0
    cov: int = 0
    ft: int = 0
    restarts: int = 0
    starved: int = 0  # timeouts that did not time out again when replayed alone
    findings: list[Finding] = field(default_factory=list)
    error: str = ""


def _signature(output: str) -> tuple[str, str]:
    """(exception line, innermost frame of ours) from atheris' report of an uncaught exception."""
    block = output.split("=== Uncaught Python exception: ===", 1)[-1]
    lines = [ln for ln in block.splitlines() if ln.strip()]
    exc = next((ln.strip() for ln in lines if re.match(r"^[A-Za-z_.]+(Error|Exception|Finding|Warning)\b", ln)
                or re.match(r"^[A-Za-z_.]+: ", ln)), "")
    where = ""
    for path, line in _FRAME.findall(block):
        if "/sfu/" in path or "/signalling/" in path or "/tests/fuzz/" in path:
            where = f"{os.path.relpath(path, HERE.parent.parent)}:{line}"
    return exc, where


def _short_name(kind: str, exc: str, where: str) -> str:
    exc_name = re.split(r"[:(\s]", exc, maxsplit=1)[0].rsplit(".", 1)[-1] or kind
    place = re.sub(r"[^A-Za-z0-9]+", "-", where.replace(".py", "")).strip("-") or "unknown"
    return f"{exc_name}-{place}"[:100]


def _script(harness: str) -> Path:
    return HERE / f"fuzz_{harness}.py"


def _hangs(harness: str, unit: Path, env: dict[str, str]) -> bool:
    """Whether `unit` still exceeds the timeout when it is replayed alone at normal priority."""
    try:
        subprocess.run([sys.executable, str(_script(harness)), str(unit)], capture_output=True,
                       env=env, cwd=HERE.parent.parent, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return True
    return False


def _budget_spent(res: Result, runs: int | None, max_time: int | None, started: float) -> bool:
    return (runs is not None and res.runs >= runs) or (max_time is not None and time.monotonic() - started >= max_time)


def run_harness(harness: str, runs: int | None, max_time: int | None, findings_dir: Path, keep_going: bool,
                nice: bool, log: Path | None = None) -> Result:
    res = Result(harness)
    seeds = HERE / "corpus" / harness
    out_dir = findings_dir / harness
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"fuzz-{harness}-"))
    artifacts = Path(tempfile.mkdtemp(prefix=f"fuzz-{harness}-art-"))
    started = time.monotonic()
    seen: set[tuple[str, str]] = set()
    try:
        while True:
            args = [sys.executable, str(_script(harness)), str(work), str(seeds),
                    f"-artifact_prefix={artifacts}/", f"-timeout={TIMEOUT_S}", "-rss_limit_mb=2048",
                    f"-max_len={MAX_LEN[harness]}", "-print_final_stats=1"]
            if runs is not None:
                args.append(f"-runs={max(runs - res.runs, 1)}")
            if max_time is not None:
                left = max_time - (time.monotonic() - started)
                args.append(f"-max_total_time={max(int(left), 1)}")
            if nice:
                args = ["nice", "-n", "19", *args]
            # PYTHONHASHSEED pinned: dict/set order then repeats, so a reproducer reproduces
            env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
            proc = subprocess.run(args, capture_output=True, text=True, errors="replace", env=env,
                                  cwd=HERE.parent.parent)
            output = proc.stdout + proc.stderr
            if log is not None:
                with log.open("a") as f:
                    f.write(output)
            stats = _STAT.findall(output)
            done = next((m for m in map(_DONE.match, output.splitlines()) if m), None)
            if stats:
                res.cov = max(res.cov, int(stats[-1][1]))
                res.ft = max(res.ft, int(stats[-1][2]))
            if done:
                res.runs += int(done.group(1))
                break
            # the unit that ended the run; libFuzzer also writes "slow-unit-" files for inputs that took
            # longer than -report_slow_units (wall-clock, so any busy machine has some) and runs on
            units = [a for a in _ARTIFACT.findall(output) if not Path(a).name.startswith("slow-unit-")]
            if not units:
                res.error = f"harness exited {proc.returncode} without a report:\n{output[-3000:]}"
                break
            res.runs += int(stats[-1][0]) if stats else 0
            path = Path(units[-1])
            kind = path.name.split("-", 1)[0]
            if kind == "timeout" and not _hangs(harness, path, env):
                res.starved += 1
                path.unlink(missing_ok=True)
                if res.starved > MAX_RESTARTS:
                    res.error = f"{res.starved} timeouts that did not reproduce: the machine is too busy to fuzz"
                    break
                if not _budget_spent(res, runs, max_time, started):
                    continue
                break
            exc, where = _signature(output) if kind == "crash" else (kind, "")
            name = _short_name(kind, exc, where)
            # one finding per exception type and place: the message varies with the input
            key = (re.split(r"[:(\s]", exc, maxsplit=1)[0], where)
            if key not in seen:
                seen.add(key)
                target = out_dir / name
                if not target.exists():
                    shutil.copyfile(path, target)
                res.findings.append(Finding(name, kind, exc[:300], where, res.runs))
            path.unlink(missing_ok=True)
            if not keep_going or res.restarts >= MAX_RESTARTS or _budget_spent(res, runs, max_time, started):
                break
            res.restarts += 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(artifacts, ignore_errors=True)
    res.seconds = round(time.monotonic() - started, 1)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("harness", nargs="*", help=f"default: all of {', '.join(HARNESSES)}")
    ap.add_argument("--runs", type=int, help="inputs per harness")
    ap.add_argument("--max-time", type=int, help="seconds per harness")
    ap.add_argument("--findings", type=Path, default=HERE / "findings", help="where reproducers go")
    ap.add_argument("--keep-going", action="store_true", help="restart after a finding until the budget is spent")
    ap.add_argument("--nice", action="store_true", help="run under nice -n 19")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--log", type=Path, help="append libFuzzer's output here")
    a = ap.parse_args()
    unknown = set(a.harness) - set(HARNESSES)
    if unknown:
        ap.error(f"unknown harness(es): {', '.join(sorted(unknown))}")
    if a.runs is None and a.max_time is None:
        a.runs = 1_000_000
    results = []
    for h in a.harness or HARNESSES:
        r = run_harness(h, a.runs, a.max_time, a.findings, a.keep_going, a.nice, a.log)
        results.append(r)
        status = "error" if r.error else f"{len(r.findings)} finding(s)"
        if r.starved:
            status += f", {r.starved} timeout(s) not reproduced alone"
        print(f"{h:9} runs={r.runs:>9} time={r.seconds:>7.1f}s cov={r.cov:>5} ft={r.ft:>6} {status}", flush=True)
        for f in r.findings:
            print(f"    {f.kind}: {f.summary}  [{f.where}]  -> {a.findings / h / f.name}", flush=True)
        if r.error:
            print("    " + r.error.replace("\n", "\n    "), flush=True)
    if a.json:
        a.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 1 if any(r.findings or r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
