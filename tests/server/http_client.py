"""A keep-alive HTTP/1.1 test client over a real socket, through h11: whole requests, or
a head and body pieces by hand (a slow upload, an ``Expect: 100-continue``, a hang-up)."""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import h11
import trio


@attrs.frozen
class Reply:
    """A response as the client read it."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        import json

        return json.loads(self.body)


@attrs.define(eq=False)
class HttpClient:
    """One connection; requests go one after the other on it while the server keeps it."""

    stream: trio.SocketStream
    host: str
    connection: h11.Connection = attrs.field(factory=lambda: h11.Connection(h11.CLIENT))

    @classmethod
    async def open(cls, port: int, host: str = "127.0.0.1") -> HttpClient:
        return cls(await trio.open_tcp_stream(host, port), f"{host}:{port}")

    async def request(
        self,
        method: str,
        target: str,
        *,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
    ) -> Reply:
        """Send a whole request (with a Content-Length), read the whole response."""
        fields = (
            [*headers, ("Content-Length", str(len(body)))]
            if body or method != "GET"
            else [*headers]
        )
        await self.send_head(method, target, fields)
        if body:
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())
        return await self.read_reply()

    async def send_head(self, method: str, target: str, headers: Iterable[tuple[str, str]]) -> None:
        await self.send(
            h11.Request(method=method, target=target, headers=[("Host", self.host), *headers])
        )

    async def send(self, event: h11.Event) -> None:
        data = self.connection.send(event)
        if data:
            await self.stream.send_all(data)

    async def next_event(self) -> h11.Event | type[h11.PAUSED]:
        """The next event from the server (reading as needed)."""
        while True:
            event = self.connection.next_event()
            if event is not h11.NEED_DATA:
                return event  # type: ignore[return-value]
            self.connection.receive_data(await self.stream.receive_some(65536))

    async def read_head(self) -> h11.Response | h11.InformationalResponse:
        event = await self.next_event()
        assert isinstance(event, (h11.Response, h11.InformationalResponse)), event
        return event

    async def read_reply(self) -> Reply:
        """The response (skipping a 100 Continue), its body read whole; ready for the next."""
        head = await self.read_head()
        while isinstance(head, h11.InformationalResponse):
            head = await self.read_head()
        body = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"unexpected {event!r} in a response body")
        if self.connection.our_state is h11.DONE and self.connection.their_state is h11.DONE:
            self.connection.start_next_cycle()
        headers = {name.decode(): value.decode() for name, value in head.headers}
        return Reply(head.status_code, headers, bytes(body))

    async def closed_by_server(self) -> bool:
        """Whether the server closes the connection (reads until it does or sends bytes)."""
        return await self.stream.receive_some(1) == b""

    async def aclose(self) -> None:
        await self.stream.aclose()
