"""corral serve's set-up of Python's cycle collector."""

from __future__ import annotations

import gc

from server.ops.gc_tuning import FULL_PASS_EVERY, tune_collector


def test_start_up_objects_are_frozen_and_only_full_passes_are_spaced_out() -> None:
    before = gc.get_threshold()
    try:
        tune_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (before[0], before[1], FULL_PASS_EVERY)
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
