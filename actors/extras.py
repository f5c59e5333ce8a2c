"""Optional features and the extra that installs each one's library.

The embedded default (one process, names and groups in memory) needs only trio, h11,
websockets and attrs. A feature that needs more imports its library through a guard that turns
a missing module into ``MissingExtra``, whose message is one line naming the extra to install.
"""

from __future__ import annotations


class MissingExtra(ImportError):
    """A feature's library is not installed; the message names the extra that installs it."""

    def __init__(self, extra: str, feature: str) -> None:
        super().__init__(f"{feature} needs the {extra} extra: pip install 'corral[{extra}]'")
        self.extra = extra
        self.feature = feature
