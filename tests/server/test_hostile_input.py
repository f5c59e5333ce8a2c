"""What a hostile client sends, over real sockets: fragments without end, a bad header that
announces a huge payload, a request pipelined after the upgrade, compressed messages that
inflate past what the server can hold. Each is refused promptly, with the right close code,
while the other clients are served."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
import wsproto.events as ev
from wsproto.extensions import PerMessageDeflate

from server import App, ConnectionOptions, Frame, ProtocolError, ServerOptions, websocket

from .kit import Recorded, Terminations, assert_echoes, frame, raw_client, running_clean

_TEXT, _BINARY, _CONTINUATION = 0x1, 0x2, 0x0
_RSV1 = 0b100  # ``frame``'s rsv bits: RSV1 marks a compressed message (RFC 7692)


class Echo(Recorded):
    def websocket_handle(self, frame: Frame, state: Any) -> tuple[Frame, Any]:
        return frame, state


def echo_app(log: Terminations, options: ConnectionOptions | None = None) -> App:
    return App([websocket("/", Echo(log), options=options)])


def fragmented(count: int, piece: bytes = b"") -> bytes:
    """One text message in ``count`` frames of ``piece`` each."""
    middle = frame(_CONTINUATION, piece, fin=False) * (count - 2)
    return frame(_TEXT, piece, fin=False) + middle + frame(_CONTINUATION, piece)


# ---- fragments --------------------------------------------------------------------------------


async def test_a_message_in_max_fragments_is_joined_and_one_more_fragment_closes_with_1009() -> (
    None
):
    log = Terminations()
    async with running_clean(echo_app(log)) as served:  # the default: 4,096 fragments
        async with raw_client(served.port) as raw:
            await raw.send_raw(fragmented(4096, b"ab"))
            assert await raw.message() == "ab" * 4096
            await raw.send_raw(fragmented(4097))  # empty fragments count too
            assert (await raw.close_event()).code == 1009
            await raw.eof()
        reason = (await log.one()).reason
        await assert_echoes(served.url())
    assert isinstance(reason, ProtocolError) and "4096 fragments" in reason.detail


async def test_max_fragments_is_a_connection_option() -> None:
    log = Terminations()
    async with running_clean(echo_app(log, ConnectionOptions(max_fragments=3))) as served:
        async with raw_client(served.port) as raw:
            await raw.send_raw(fragmented(3, b"x"))
            assert await raw.message() == "xxx"
            await raw.send_raw(fragmented(4, b"x"))
            assert (await raw.close_event()).code == 1009


# ---- a bad header is refused at the header -----------------------------------------------------

_SIXTEEN_MIB = (16 * 2**20).to_bytes(8, "big")


@pytest.mark.parametrize(
    "header",
    [
        bytes([0x83, 0xFF]) + _SIXTEEN_MIB + b"mask",  # a reserved opcode
        bytes([0x81, 0x7F]) + _SIXTEEN_MIB,  # no mask bit
        bytes([0x91, 0xFF]) + _SIXTEEN_MIB + b"mask",  # a reserved bit
        bytes([0x80, 0xFF]) + _SIXTEEN_MIB + b"mask",  # a continuation of nothing
    ],
    ids=["reserved-opcode", "unmasked", "rsv3", "stray-continuation"],
)
async def test_a_bad_header_announcing_16_mib_is_refused_with_1002_before_its_payload(
    header: bytes,
) -> None:
    log = Terminations()
    options = ConnectionOptions(max_message_size=64 * 2**20)  # the size alone is allowed
    async with running_clean(echo_app(log, options)) as served:
        async with raw_client(served.port) as raw:
            await raw.send_raw(header)  # no payload follows
            assert (await raw.close_event()).code == 1002
            await raw.eof()
        reason = (await log.one()).reason
    assert isinstance(reason, ProtocolError) and reason.code == 1002


async def test_a_request_pipelined_after_the_upgrade_head_is_refused_with_1002() -> None:
    """After the 101 those bytes are the client's first frames ("GE": a reserved opcode):
    refused at once, not waited on for the 71 bytes their "length" announces."""
    log = Terminations()
    pipelined = b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    async with running_clean(echo_app(log)) as served:
        async with raw_client(served.port, after_head=pipelined) as raw:
            assert (await raw.close_event()).code == 1002
            await raw.eof()
        reason = (await log.one()).reason
    assert isinstance(reason, ProtocolError) and reason.code == 1002


# ---- inflated memory has one budget for the server ---------------------------------------------


class _Deflater:
    """A client's side of permessage-deflate: a message's fragments, compressed in one stream."""

    def __init__(self) -> None:
        self._compressor = zlib.compressobj(wbits=-9)  # within any window the server allows

    def fragment(self, data: bytes, *, final: bool) -> bytes:
        compressed = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        return compressed[:-4] if final else compressed  # RFC 7692 §7.2.1


async def test_unfinished_compressed_messages_share_one_budget_and_the_one_past_it_gets_1013() -> (
    None
):
    log = Terminations()
    options = ConnectionOptions(compression=True, max_message_size=4 * 2**20)
    server_options = ServerOptions(inflate_budget=2**20)
    part = 600_000  # inflated; a few hundred bytes on the wire
    async with running_clean(echo_app(log, options), server_options) as served:
        offer = [PerMessageDeflate()]
        async with raw_client(served.port, extensions=offer) as first:
            first_deflater = _Deflater()
            await first.send_raw(
                frame(
                    _BINARY,
                    first_deflater.fragment(b"a" * part, final=False),
                    fin=False,
                    rsv=_RSV1,
                )
                + frame(0x9, b"held")  # answered once the fragment before it is inflated
            )
            assert isinstance(await first.next_event(), ev.Pong)
            async with raw_client(served.port, extensions=offer) as second:
                fragment = _Deflater().fragment(b"b" * part, final=False)
                await second.send_raw(frame(_BINARY, fragment, fin=False, rsv=_RSV1))
                assert (await second.close_event()).code == 1013
                await second.eof()
            await first.send_raw(frame(_CONTINUATION, first_deflater.fragment(b"c", final=True)))
            assert await first.message() == b"a" * part + b"c"
            async with raw_client(served.port, extensions=offer) as third:  # given back
                deflater = _Deflater()
                await third.send_raw(
                    frame(
                        _BINARY, deflater.fragment(b"d" * part, final=False), fin=False, rsv=_RSV1
                    )
                    + frame(_CONTINUATION, deflater.fragment(b"e", final=True))
                )
                assert await third.message() == b"d" * part + b"e"
        ended = await log.wait(3)  # the second, then the others as they leave
    refused = [call.reason for call in ended if isinstance(call.reason, ProtocolError)]
    assert [reason.code for reason in refused] == [1013]
