#!/usr/bin/env python3
"""Run ``make test`` on a busy machine: CPU-burning processes beside it, ``--runs N`` times.

Issue 16: the suite must pass on a loaded 2-core machine, at any time of day. This
starts ``--burners`` processes (default 4) that spin on the CPU at normal priority, runs
``make test`` (``PYTEST_ARGS`` from the environment or ``--pytest-args`` is passed on)
up to ``--runs`` times, stops at the first failure, and prints each run's result,
duration and load average. The burners are killed when the script ends, whatever ends
it: a normal exit, an exception, Ctrl-C, SIGTERM, or the script being killed (each
burner asks the kernel for SIGKILL when its parent dies); the test run is ended with it.

    python scripts/busy_test.py --runs 3
    make test-busy BUSY_ARGS="--runs 3"
    python scripts/busy_test.py --runs 1 --pytest-args "tests/dashboards/test_rules.py -x -q"
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PR_SET_PDEATHSIG = 1
#: A busy loop: no I/O, no memory, all CPU.
BURN = "while True: pass"


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the parent dies (Linux prctl)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _end_with_parent() -> None:
    """In ``make``'s child before exec: SIGTERM when the parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run_tests(command: Sequence[str]) -> int:
    """Run ``command`` in a session of its own; on any way out, end it and its children."""
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_end_with_parent,  # only prctl: safe before exec
    )
    try:
        return proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait()


@contextmanager
def burners(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` CPU-burning processes for the duration of the block."""
    procs: list[subprocess.Popen[bytes]] = []
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        for _ in range(count):
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", BURN],
                    stdin=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,  # only prctl: safe before exec
                )
            )
        yield procs
    finally:
        _stop(procs)
        signal.signal(signal.SIGTERM, previous)


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} {five:.1f} {fifteen:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="runs of make test (default 1)")
    parser.add_argument("--burners", type=int, default=4, help="CPU burners (default 4)")
    parser.add_argument(
        "--pytest-args",
        default=os.environ.get("PYTEST_ARGS", ""),
        help="passed to make test as PYTEST_ARGS (default: $PYTEST_ARGS)",
    )
    parser.add_argument("--target", default="test", help="the make target (default test)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.burners < 0:
        parser.error("--runs must be at least 1 and --burners at least 0")
    command = ["make", "-C", str(ROOT), args.target, f"PYTEST_ARGS={args.pytest_args}"]
    print(f"busy-test: {args.burners} CPU burners on {os.cpu_count()} CPUs; "
          f"{args.runs} run(s) of: {shlex.join(command)}", flush=True)  # fmt: skip
    results: list[tuple[int, int, float, str]] = []
    with burners(args.burners):
        time.sleep(2)  # let the load build up
        for run in range(1, args.runs + 1):
            print(f"busy-test: run {run}/{args.runs} starts, load average {_load()}", flush=True)
            started = time.monotonic()
            code = run_tests(command)
            took = time.monotonic() - started
            load = _load()
            results.append((run, code, took, load))
            verdict = "passed" if code == 0 else f"FAILED (exit {code})"
            print(f"busy-test: run {run}/{args.runs} {verdict} in {took:.0f} s, "
                  f"load average {load}", flush=True)  # fmt: skip
            if code != 0:
                break
    print("busy-test: summary")
    for run, code, took, load in results:
        print(f"  run {run}: {'passed' if code == 0 else 'FAILED'}  {took:7.0f} s  load {load}")
    failed = any(code != 0 for _, code, _, _ in results)
    passed = sum(code == 0 for _, code, _, _ in results)
    print(
        f"busy-test: {passed} of {args.runs} run(s) passed"
        + (", stopped at the failure" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
