"""Every name corral takes from websockets, in one place, checked when corral is imported.

corral parses the client's frames itself (``session``) and uses websockets for what it
documents: frame and close records (``websockets.frames``), the permessage-deflate extension
and its negotiation, extension headers, and exceptions. One undocumented name remains:
``websockets.speedups.apply_mask``, the C helper that unmasks a client frame, on every
message's path, where Python's XOR would cost several times as much; when websockets was
built without its C extension, ``apply_mask_in_python`` takes its place. If a later
websockets renames or drops any of these, importing corral fails here, naming the version,
rather than a limit silently stopping to apply.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Final

from websockets.version import version as _installed_version

WEBSOCKETS_VERSION: Final[str] = _installed_version


class IncompatibleWebsockets(ImportError):
    """The installed websockets lacks a name corral relies on."""


def _missing(name: str) -> IncompatibleWebsockets:
    return IncompatibleWebsockets(
        f"corral needs {name}, which websockets {WEBSOCKETS_VERSION} does not have: "
        "install the websockets version pinned in corral's pyproject.toml"
    )


try:
    from websockets.exceptions import InvalidHandshake, NegotiationError, ProtocolError
    from websockets.extensions import Extension
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
    from websockets.frames import Close, Frame, Opcode
    from websockets.headers import build_extension, parse_extension
    from websockets.server import ServerProtocol  # the ASGI WebSocket scope's (front/asgi_ws)
    from websockets.typing import Subprotocol
except ImportError as exc:  # the message names the missing name; ours adds the version
    raise _missing(f"{exc.name or 'websockets'} ({exc})") from exc

_RELIED_ON: Final = {
    "websockets.frames": ("Frame.serialize", "Close.parse", "Close.serialize", "Opcode.CLOSE"),
    "websockets.extensions": ("Extension.encode",),
    "websockets.extensions.permessage_deflate": (
        "ServerPerMessageDeflateFactory.process_request_params",
        "ServerPerMessageDeflateFactory.name",
    ),
}
"""Attributes (beyond the names imported above) whose absence would break corral."""


def require(module_name: str, dotted: str) -> None:
    """Raise IncompatibleWebsockets unless ``module_name`` has the attribute path ``dotted``."""
    target: object = importlib.import_module(module_name)
    for part in dotted.split("."):
        if not hasattr(target, part):
            raise _missing(f"{module_name}.{dotted}")
        target = getattr(target, part)


for _module, _names in _RELIED_ON.items():
    for _name in _names:
        require(_module, _name)


def apply_mask_in_python(data: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 §5.3), in pure Python."""
    length = len(data)
    repeated = (bytes(mask) * (length // 4 + 1))[:length]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(length, "big")


def _speedups_apply_mask() -> Callable[[bytes | bytearray, bytes | bytearray], bytes]:
    try:
        speedups = importlib.import_module("websockets.speedups")
    except ImportError:  # pragma: no cover - websockets built without its C extension
        return apply_mask_in_python
    if not hasattr(speedups, "apply_mask"):
        raise _missing("websockets.speedups.apply_mask")
    apply: Callable[[bytes | bytearray, bytes | bytearray], bytes] = speedups.apply_mask
    return apply


apply_mask: Final = _speedups_apply_mask()
"""Unmask a client frame's payload (websockets' C helper when it is built, else Python)."""

__all__ = [
    "WEBSOCKETS_VERSION",
    "Close",
    "Extension",
    "Frame",
    "IncompatibleWebsockets",
    "InvalidHandshake",
    "NegotiationError",
    "Opcode",
    "ProtocolError",
    "ServerPerMessageDeflateFactory",
    "ServerProtocol",
    "Subprotocol",
    "apply_mask",
    "build_extension",
    "parse_extension",
]
