"""Deprecated alias of ``server.ops.dashboard`` (moved in 0.2.0; the alias goes in 0.3.0)."""

import warnings

from .ops.dashboard import dashboard_routes, dashboard_sampler, with_dashboard

warnings.warn(
    "server.dashboard moved to server.ops.dashboard; import with_dashboard from there",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["dashboard_routes", "dashboard_sampler", "with_dashboard"]
