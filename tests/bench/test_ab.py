"""bench/ab.py reads each benchmark's figures from its printed table (no benchmark runs here)."""

from __future__ import annotations

from .kit import BENCH, load_bench

ab = load_bench(BENCH / "ab.py")

OUTPUTS = {
    "echo_throughput.py": (
        "1     corral        14,282          21.7           9.7         31%         14%        1\n"
        "50    corral        42,758          13.8           6.1         59%         26%        2\n"
    ),
    "fanout.py": (
        "median corral           60,000/60,000        150,225    105.1    123.2     0.04     0.03\n"
        "median cowboy           60,000/60,000         82,549    181.2    230.7     0.08     0.03\n"
    ),
    "idle_memory.py": "corral  38.3  130.1  9.6  9.6-9.6  870  236  31 10,011\n",
    "gc_pause.py": "corral          0.8    57.9  1367.4          526    9,000       5.83\n",
    "push_cost.py": "cowboy: 3.250 us of CPU per delivery (500 subscribers)\n",
    "server_instructions.py": (
        "1 connection(s) x 2000 round trips: 189,710,000 instructions\n"
        "instructions per round trip: 94,855\n"
        "instructions per connection opened: 1,355,554\n"
        "instructions per connection closed: 612,345\n"
    ),
}
EXPECTED = {
    "echo 1 conn rt/s": 14282,
    "echo 1 conn server us/rt": 21.7,
    "echo 50 conns rt/s": 42758,
    "echo 50 conns server us/rt": 13.8,
    "broadcast deliveries/s": 150225,
    "cowboy way deliveries/s": 82549,
    "idle KB per connection": 9.6,
    "opens/s": 870,
    "close-burst p99 ms": 57.9,
    "CPU us per delivery": 3.25,
    "server instructions/rt": 94855,
    "server instructions/open": 1355554,
    "server instructions/close": 612345,
}


def test_every_known_figure_is_read_from_its_benchmarks_table() -> None:
    read = {
        figure.name: figure.read(OUTPUTS[bench])
        for bench, figures in ab.FIGURES.items()
        for figure in figures
    }
    assert read == EXPECTED
