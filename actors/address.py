"""Actor addresses: hashable, printable, and carrying the node they live on."""

from __future__ import annotations

import attrs


@attrs.frozen(repr=False, cache_hash=True)
class Address:
    """Where an actor can be reached (Erlang's pid).

    Two addresses are equal when node and serial are equal; the label is a human hint
    (what the actor is) and plays no part in identity. The node name lets an address
    travel between processes and machines and still mean the same actor.
    """

    node: str
    serial: int
    label: str | None = attrs.field(default=None, eq=False, hash=False)

    def __repr__(self) -> str:
        suffix = f" {self.label!r}" if self.label else ""
        return f"<actor {self.node}.{self.serial}{suffix}>"

    __str__ = __repr__
