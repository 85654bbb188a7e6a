"""Every fuzz harness runs for a short while (atheris, coverage-guided) and finds nothing.

This is the CI slice of `make fuzz` (tests/fuzz/README.md): each harness fuzzes SMOKE_RUNS inputs from
its committed seed corpus, two harnesses at a time, in subprocesses (no root, no network: harnesses
call parsers and handlers on bytes). A number of inputs, not of seconds: how many inputs a time box
holds depends on the machine and its load (on a loaded CI machine the native harness, which runs
every datagram through both data paths and three AES implementations, did 857 in 6.7 s), and a
test whose outcome depends on that is flaky. A finding fails the test with the exception, where it
was raised, and the reproducer, saved under the test's tmp directory.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import atheris  # noqa: F401  (a dev dependency: a missing fuzzer is a broken install, not a skip)
import pytest

FUZZ = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("fuzz_runner", FUZZ / "run.py")
_runner = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_runner"] = _runner  # dataclasses look their module up while the class is built
_spec.loader.exec_module(_runner)
HARNESSES = _runner.HARNESSES

REGRESSIONS = FUZZ / "regressions"  # reproducers of fixed findings, replayed on every run
SMOKE_RUNS = 3000  # each: seconds (the slowest harnesses do a few hundred a second when loaded)


@pytest.fixture(scope="module")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    base = tmp_path_factory.mktemp("fuzz")

    def one(harness: str) -> dict:
        out = base / f"{harness}.json"
        subprocess.run([sys.executable, str(FUZZ / "run.py"), harness, "--runs", str(SMOKE_RUNS),
                        "--findings", str(base / "findings"), "--json", str(out)],
                       capture_output=True, text=True, timeout=300)
        return json.loads(out.read_text())[0]

    with ThreadPoolExecutor(max_workers=2) as pool:
        return {r["harness"]: r for r in pool.map(one, HARNESSES)}


@pytest.mark.timeout(600)  # the fixture: every harness's fuzzing and start-up, two at a time
@pytest.mark.parametrize("harness", HARNESSES)
def test_fuzz_smoke(smoke_results: dict[str, dict], harness: str) -> None:
    r = smoke_results[harness]
    assert not r["error"], r["error"]
    found = [f"{f['kind']}: {f['summary']} at {f['where']} (reproducer {f['name']})" for f in r["findings"]]
    assert not found, f"{harness}: " + "; ".join(found)
    assert r["runs"] >= SMOKE_RUNS, f"{harness} ran only {r['runs']} of {SMOKE_RUNS} inputs ({r['seconds']} s)"


@pytest.mark.parametrize("harness", sorted(p.name for p in REGRESSIONS.iterdir()) if REGRESSIONS.is_dir() else [])
def test_fixed_findings_stay_fixed(harness: str) -> None:
    files = sorted(str(p) for p in (REGRESSIONS / harness).iterdir())
    assert files
    # atheris given files runs each input once (no fuzzing) and exits non-zero on a finding
    r = subprocess.run([sys.executable, str(FUZZ / f"fuzz_{harness}.py"), *files], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
