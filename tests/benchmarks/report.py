"""What every benchmark shares in its output: the machine it ran on, tables, and its own section
of docs/performance.md.

Each benchmark owns the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->` in that
file and rewrites only that; a section not there yet is added at the end. So one benchmark can be
rerun without losing the others' figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy

DOC = Path(__file__).resolve().parents[2] / "docs" / "performance.md"
HEADER = """\
# Performance

This file is written by `make bench` (and `make soak`); do not edit it by hand, rerun the
benchmark. Each section below is written by one module of `tests/benchmarks/` between its
`<!-- bench:NAME -->` markers, with the machine and the date of its own run, so a section can be
regenerated alone (`python -m tests.benchmarks.MODULE --write`). The machine is shared and noisy:
compare figures measured side by side in the same run (the ratios), not figures from different
sections.
"""


def seconds_per_cell() -> float:
    """BENCH_SECONDS, or 10: how long each measured cell of a load benchmark runs."""
    return float(os.environ.get("BENCH_SECONDS", "10"))


def load_parser(doc: str | None, section: str) -> argparse.ArgumentParser:
    """The command line shared by the load benchmarks (release, tokens): cell length, client
    counts, SQLite only, profiling, and rewriting `section` of docs/performance.md."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0] if doc else None)
    parser.add_argument("--seconds", type=float, default=seconds_per_cell())
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--profile", action="store_true", help="sample the broker with py-spy")
    parser.add_argument("--write", action="store_true", help=f"rewrite the {section} section")
    return parser


def databases(sqlite_only: bool) -> list[tuple[str, str]]:
    """(name, database) to run on: SQLite, and PostgreSQL when BROKER_TEST_POSTGRES_URL names
    a server and `sqlite_only` is not set."""
    found = [("SQLite", "sqlite")]
    postgres = os.environ.get("BROKER_TEST_POSTGRES_URL", "")
    if postgres and not sqlite_only:
        found.append(("PostgreSQL", postgres))
    return found


def machine_info() -> dict[str, str]:
    """Date, CPU, Python, SQLite and SQLAlchemy versions, platform of this run."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 0
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(cpus),
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sqlite": sqlite3.sqlite_version,
        "sqlalchemy": sqlalchemy.__version__,
        "platform": platform.platform(),
    }


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as text."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]], right: int = 1) -> list[str]:
    """A markdown table; columns from index `right` on are right-aligned."""
    align = ["---" if i < right else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """The same table as plain text on stdout, columns padded."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=False)]
    for row in (header, *rows):
        print("  " + "  ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=False)))


def machine_lines(machine: dict[str, str]) -> list[str]:
    """The machine as a markdown list."""
    return [f"- {key}: {value}" for key, value in machine.items()]


def profile_table(shares: Sequence[tuple[str, float]]) -> list[str]:
    """A py-spy profile (label, share of the broker's Python time) as a markdown table."""
    return table(
        ["Where the broker's Python time goes", "Share"],
        [[label, f"{share:.0%}"] for label, share in shares],
    )


def footer(machine: dict[str, str], module: str, short_run: str) -> list[str]:
    """The machine, and how to rerun the section alone (`short_run`: how to make it quick)."""
    rerun = (
        f"Rerun this section alone: `python -m tests.benchmarks.{module} --write` ({short_run})."
    )
    return ["", "Machine:", "", *machine_lines(machine), "", rerun]


def write_section(name: str, body: str, path: Path = DOC) -> None:
    """Replace the section `name` of `path` with `body` (markdown), or append it."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else HEADER
    if not text.startswith("# Performance"):
        text = HEADER  # the old single-benchmark layout: start the sectioned file afresh
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")
    print(f"wrote the {name} section of {path}")
