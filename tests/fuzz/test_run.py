"""tests/fuzz/run.py itself, with a stand-in harness that prints what libFuzzer prints.

libFuzzer's -timeout is wall-clock time and `make fuzz` runs at the lowest priority, so a unit can
time out because the machine was busy. The runner replays a timeout alone: only one that times
out again is a finding.
"""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import pytest

FUZZ = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("fuzz_runner_under_test", FUZZ / "run.py")
runner = importlib.util.module_from_spec(_spec)
sys.modules["fuzz_runner_under_test"] = runner
_spec.loader.exec_module(runner)

# Fuzzing (a corpus directory and flags): the first run writes a slow unit (libFuzzer carries on
# after those), then "times out" on a unit and writes it as libFuzzer does, after 300 inputs; the
# next run finishes the budget. Replaying (one file): sleeps if the unit says so.
STAND_IN = textwrap.dedent('''
    import pathlib, sys, time
    args = sys.argv[1:]
    if len(args) == 1:
        time.sleep(30 if pathlib.Path(args[0]).read_bytes() == b"hang" else 0)
        sys.exit(0)
    flags = dict(a[1:].split("=", 1) for a in args if a.startswith("-"))
    marker = pathlib.Path(flags["artifact_prefix"]) / "ran-once"
    if not marker.exists():
        marker.write_text("")
        unit = pathlib.Path(flags["artifact_prefix"]) / "timeout-0123"
        unit.write_bytes(UNIT)
        slow = pathlib.Path(flags["artifact_prefix"]) / "slow-unit-4567"
        slow.write_bytes(b"slow")  # a unit that took long on a busy machine: libFuzzer carries on
        print(f"Slow unit: 11 s:\\nTest unit written to {slow}")
        print("#300\\tNEW    cov: 7 ft: 9 corp: 3/3b exec/s: 100 rss: 30Mb")
        print("==1== ERROR: libFuzzer: timeout after 12 seconds")
        print(f"artifact_prefix='{flags['artifact_prefix']}'; Test unit written to {unit}")
        sys.exit(70)
    print(f"Done {flags['runs']} runs in 1 second(s)")
''')


def _harness(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unit: bytes) -> None:
    script = tmp_path / "fuzz_standin.py"
    script.write_text(f"UNIT = {unit!r}\n" + STAND_IN)
    monkeypatch.setattr(runner, "_script", lambda harness: script)
    monkeypatch.setattr(runner, "TIMEOUT_S", 2)
    monkeypatch.setitem(runner.MAX_LEN, "standin", 64)


def test_a_timeout_that_does_not_recur_alone_is_not_a_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _harness(tmp_path, monkeypatch, b"quick")
    res = runner.run_harness("standin", 1000, None, tmp_path / "findings", keep_going=False, nice=False)
    assert (res.findings, res.starved, res.error) == ([], 1, "")
    assert res.runs == 1000  # 300 before the timeout, the other 700 after it
    assert not list((tmp_path / "findings" / "standin").iterdir())


def test_a_timeout_that_recurs_alone_is_a_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _harness(tmp_path, monkeypatch, b"hang")
    res = runner.run_harness("standin", 1000, None, tmp_path / "findings", keep_going=False, nice=False)
    assert res.starved == 0
    assert [(f.kind, f.name, f.runs_at) for f in res.findings] == [("timeout", "timeout-unknown", 300)]
    assert (tmp_path / "findings" / "standin" / "timeout-unknown").read_bytes() == b"hang"
