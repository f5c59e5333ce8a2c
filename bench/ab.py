"""A/B: run one of these benchmarks alternately on two checkouts (old, new) and print each figure's
medians and the new/old ratio, with the machine's load beside every run.

Each run is the benchmark's own script, from its own checkout, with its own interpreter
(``<checkout>/.venv/bin/python`` if there is one), so each side measures its own code. The
runs alternate old, new, old, new..., so drift in the machine's load hits both sides alike; the
spread of each side's runs is printed too: a ratio inside the spread is noise.

Run: ``python bench/ab.py --old ../main --new . --runs 3 fanout.py --rounds 3``; the figures of
``echo_throughput.py``, ``fanout.py``, ``idle_memory.py``, ``gc_pause.py``, ``push_cost.py`` and
``server_instructions.py`` are known.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import attrs


@attrs.frozen
class Figure:
    """One number a benchmark prints: where to find it, and which way is better."""

    name: str
    pattern: str
    higher_is_better: bool

    def read(self, output: str) -> float | None:
        found = re.search(self.pattern, output, re.MULTILINE)
        return float(found.group(1).replace(",", "")) if found else None


FIGURES: dict[str, tuple[Figure, ...]] = {
    "echo_throughput.py": (
        Figure("echo 1 conn rt/s", r"^1\s+corral\s+([\d,]+)", True),
        Figure("echo 1 conn server us/rt", r"^1\s+corral\s+[\d,]+\s+([\d.]+)", False),
        Figure("echo 50 conns rt/s", r"^50\s+corral\s+([\d,]+)", True),
        Figure("echo 50 conns server us/rt", r"^50\s+corral\s+[\d,]+\s+([\d.]+)", False),
    ),
    "fanout.py": (
        Figure("broadcast deliveries/s", r"^median corral\s+\S+\s+([\d,]+)", True),
        Figure("cowboy way deliveries/s", r"^median cowboy\s+\S+\s+([\d,]+)", True),
    ),
    "idle_memory.py": (
        Figure("idle KB per connection", r"^corral\s+[\d.]+\s+[\d.]+\s+([\d.]+)", False),
        Figure("opens/s", r"^corral(?:\s+\S+){4}\s+([\d,]+)", True),
    ),
    "server_instructions.py": (
        Figure("server instructions/rt", r"^instructions per round trip: ([\d,]+)", False),
        Figure(
            "server instructions/open", r"^instructions per connection opened: ([\d,]+)", False
        ),
        Figure(
            "server instructions/close", r"^instructions per connection closed: ([\d,]+)", False
        ),
    ),
    "push_cost.py": (Figure("CPU us per delivery", r"([\d.]+) us of CPU per delivery", False),),
    "gc_pause.py": (Figure("close-burst p99 ms", r"^corral\s+[\d.]+\s+([\d.]+)", False),),
}


def _spread(values: list[float]) -> str:
    """The median, and the range of the runs."""
    return f"{statistics.median(values):>10,.6g} ({min(values):,.6g}-{max(values):,.6g})"


def python_of(checkout: Path) -> str:
    venv = checkout / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def run_once(checkout: Path, bench: str, args: list[str], fallback: Path) -> str:
    """One run of ``bench`` on ``checkout`` (its own script, else ``fallback``'s); its output."""
    script = checkout / "bench" / bench
    if not script.exists():
        script = fallback / "bench" / bench
    command = [python_of(checkout), str(script), *args]
    env = {**os.environ, "PYTHONPATH": str(checkout)}  # its own code, whatever is installed
    done = subprocess.run(
        command, cwd=checkout, env=env, capture_output=True, text=True, check=False
    )
    if not done.stdout:
        raise SystemExit(f"ab: {' '.join(command)} failed:\n{done.stderr}")
    return done.stdout


def main(argv: list[str] | None = None) -> int:
    """Parse, alternate the runs, print each figure's medians and ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--new", type=Path, default=Path("."), help="default: this checkout")
    parser.add_argument("--runs", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("bench", choices=sorted(FIGURES))
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark")
    options = parser.parse_args(argv)
    figures = FIGURES[options.bench]
    readings: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}
    for run in range(options.runs):
        for side in ("old", "new"):
            checkout = (options.old if side == "old" else options.new).resolve()
            started = time.monotonic()
            output = run_once(checkout, options.bench, options.args, options.new.resolve())
            load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
            values = {figure.name: figure.read(output) for figure in figures}
            shown = "  ".join(f"{name} {value:g}" for name, value in values.items() if value)
            print(
                f"run {run + 1} {side}: {shown}  ({time.monotonic() - started:.0f} s, load {load})"
            )
            for name, value in values.items():
                if value is not None:
                    readings[side].setdefault(name, []).append(value)
            sys.stdout.flush()
    print(f"{' '.join([options.bench, *options.args])}: medians of {options.runs} runs per side")
    for figure in figures:
        old, new = readings["old"].get(figure.name), readings["new"].get(figure.name)
        if not old or not new:
            print(f"  {figure.name}: not found in the output")
            continue
        ratio = statistics.median(new) / statistics.median(old)
        better = ratio >= 1 if figure.higher_is_better else ratio <= 1
        print(
            f"  {figure.name:<28} old {_spread(old)}  new {_spread(new)}"
            f"  new/old {ratio:.3f}x {'better' if better else 'worse'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
