"""Where a server process spends its Python time, sampled by py-spy while a load runs.

py-spy (`pip install py-spy`, a benchmark-only tool) samples the process from outside, so the
server runs unchanged. With `--gil` only the thread holding the interpreter lock is sampled:
the shares are of the Python work of a process that can use one core for Python at a time.
A share is inclusive (a function and everything it calls) and the shares overlap.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path


def py_spy() -> str | None:
    """The py-spy executable beside this Python, or on PATH; None if not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def record(pid: int, seconds: float, out: Path) -> Path:
    """Sample process `pid` for `seconds` (GIL holder only, 200 Hz) into collapsed stacks."""
    executable = py_spy()
    if executable is None:
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    subprocess.run(
        [executable, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
         "--format", "raw", "--output", str(out), "--rate", "200", "--nonblocking", "--gil"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return out


def shares(folded: Path, frames: Mapping[str, str]) -> list[tuple[str, float]]:
    """For each label, the share of samples whose stack holds a frame whose text contains the
    pattern (e.g. "release (broker/releases/service.py"), largest first."""
    hits: Counter[str] = Counter()
    total = 0
    for line in folded.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for label, pattern in frames.items():
            if pattern in stack:
                hits[label] += int(count)
    return sorted(((label, hits[label] / (total or 1)) for label in frames), key=lambda x: -x[1])


def during(
    pid: int, load: Callable[[], object], seconds: float, out: Path, frames: Mapping[str, str]
) -> list[tuple[str, float]]:
    """Run `load` (which lasts about `seconds` plus a warm-up) while sampling `pid`; the shares."""
    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    time.sleep(min(1.0, seconds / 2))  # past the load's warm-up
    try:
        record(pid, seconds, out)
    finally:
        worker.join()
    return shares(out, frames)


def lines(found: list[tuple[str, float]]) -> list[str]:
    """The shares as text, one per line."""
    return [f"{share:5.1%}  {label}" for label, share in found]
