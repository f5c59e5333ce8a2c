"""A room's state as plain data: who is in it (nick and connection), and what its history
costs (the messages themselves are in the room's topic, which keeps as many as the roster)."""

from __future__ import annotations

from collections import deque

import attrs

from actors import Address, MonitorRef

from . import protocol
from .protocol import Said


@attrs.frozen
class Member:
    """One joined connection: its address, its nick, and the room's monitor on it; ``shared``:
    its nick comes from a signed token, so the same person's other connections may use it."""

    address: Address
    nick: str
    monitor: MonitorRef
    shared: bool = False


@attrs.define
class Roster:
    """Members by connection and by nick keys (case and look-alikes folded), and the cost of
    each message of the history, oldest first."""

    _by_address: dict[Address, Member] = attrs.field(factory=dict, init=False)
    _by_key: dict[str, set[Address]] = attrs.field(factory=dict, init=False)
    _costs: deque[int] = attrs.field(factory=deque, init=False)
    history_bytes: int = attrs.field(default=0, init=False)
    """What the history holds (``Said.cost`` summed)."""

    def join_problem(self, address: Address, nick: str, *, shared: bool = False) -> str | None:
        """Why ``address`` may not join as ``nick`` (already in, or nick taken), or None. A
        ``shared`` nick (a signed one) may be held by several connections: one person's tabs."""
        current = self._by_address.get(address)
        if current is not None:
            return f"already joined as {current.nick}"
        for key in protocol.nick_keys(nick):
            for holder in self._by_key.get(key, ()):
                other = self._by_address[holder]
                if not (shared and other.shared and other.nick == nick):
                    return f"nick taken: {nick} is already in this room"
        return None

    def add(self, member: Member) -> None:
        """Record a member whose join was accepted."""
        self._by_address[member.address] = member
        for key in protocol.nick_keys(member.nick):
            self._by_key.setdefault(key, set()).add(member.address)

    def remove(self, address: Address) -> Member | None:
        """Forget the member at ``address``; return it, or None if it was not in."""
        member = self._by_address.pop(address, None)
        if member is not None:
            for key in protocol.nick_keys(member.nick):
                holders = self._by_key[key]
                holders.discard(address)
                if not holders:
                    del self._by_key[key]
        return member

    def get(self, address: Address) -> Member | None:
        """The member at ``address``, or None."""
        return self._by_address.get(address)

    def nicks(self) -> list[str]:
        """Every member's nick, in join order (once each)."""
        return list(dict.fromkeys(member.nick for member in self._by_address.values()))

    def __len__(self) -> int:
        return len(self._by_address)

    def record(self, nick: str, text: str, at: str) -> Said:
        """Count a message into the history (the oldest goes past 50) and return it."""
        message = Said(nick, text, at)
        self._costs.append(message.cost())
        self.history_bytes += self._costs[-1]
        if len(self._costs) > protocol.HISTORY_SIZE:
            self._drop_oldest()
        return message

    def shed(self, size: int) -> None:
        """Drop the oldest messages until ``size`` bytes are freed or the history is empty."""
        goal = self.history_bytes - size
        while self._costs and self.history_bytes > goal:
            self._drop_oldest()

    @property
    def kept(self) -> int:
        """How many messages the history holds (the room's topic keeps as many)."""
        return len(self._costs)

    def _drop_oldest(self) -> None:
        self.history_bytes -= self._costs.popleft()
