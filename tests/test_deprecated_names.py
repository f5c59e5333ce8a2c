"""Public names renamed in 0.2.0 keep working for one release, each warning with its new name."""

import importlib
import sys

import pytest

import actors


def test_actors_exit_warns_and_is_send_exit() -> None:
    with pytest.warns(DeprecationWarning, match=r"actors\.send_exit"):
        old = actors.exit  # type: ignore[attr-defined]
    assert old is actors.send_exit


def test_an_unknown_actors_name_is_still_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        actors.no_such_name  # type: ignore[attr-defined]  # noqa: B018


def test_server_dashboard_warns_and_gives_the_ops_dashboard() -> None:
    sys.modules.pop("server.dashboard", None)
    with pytest.warns(DeprecationWarning, match=r"server\.ops\.dashboard"):
        old = importlib.import_module("server.dashboard")
    from server.ops.dashboard import with_dashboard

    assert old.with_dashboard is with_dashboard
