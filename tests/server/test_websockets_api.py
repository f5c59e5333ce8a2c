"""The websockets adapter: every name corral relies on is checked at import, loudly."""

from __future__ import annotations

import os

import pytest

from server.engine.websockets_api import (
    WEBSOCKETS_VERSION,
    IncompatibleWebsockets,
    apply_mask,
    apply_mask_in_python,
    require,
)


def test_a_name_websockets_no_longer_has_fails_naming_the_installed_version() -> None:
    with pytest.raises(IncompatibleWebsockets) as caught:
        require("websockets.frames", "Close.parse_renamed")
    message = str(caught.value)
    assert "websockets.frames.Close.parse_renamed" in message
    assert f"websockets {WEBSOCKETS_VERSION}" in message


def test_the_names_corral_relies_on_are_all_there() -> None:
    require("websockets.frames", "Close.serialize")  # no exception: what import checked


def test_unmasking_gives_the_payload_back() -> None:
    payload, mask = os.urandom(1000), os.urandom(4)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    assert apply_mask(masked, mask) == payload
    assert apply_mask_in_python(masked, mask) == payload  # without websockets' C extension
    assert apply_mask_in_python(b"", mask) == b""
