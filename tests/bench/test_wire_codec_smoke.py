"""bench/wire_codec.py runs and prints a line per envelope, new wire against pickle."""

from __future__ import annotations

from .kit import NUMBER, assert_printed, run_bench


def test_quick_run_prints_each_envelope_against_pickle() -> None:
    run = run_bench("wire_codec.py", "--count", "50", "--rounds", "1", timeout=60)
    figures = rf"\s+{NUMBER} / {NUMBER} \({NUMBER}x\)"
    assert_printed(
        run,
        *(
            rf"{name}\s+\d+ / \d+\s*{figures}{figures}"
            for name in ("broadcast frame", "send tuple", "send attrs Say")
        ),
    )
