"""Frames to many connections at once: encoded once, written to each outbox, never waited on.

Server frames are unmasked, so the same bytes serve every client: ``broadcast`` builds
them once and pushes them into each member connection's outbox, where that connection's
overflow policy applies if it is full. A connection writes what one task step pushed to it
in one write, once that step is over (``step_writes``): a burst of broadcasts costs each
member one ``send``. Members that are plain actors (not connections) get the message itself
in their mailbox. Works from any code under the server's node.

In a cluster (``ServerOptions.redis_url``) members on other nodes are reached with one message
per node, which encodes the frame once there and fans it out to its own members; a frame for
one connection on another node travels the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import actors
from actors import Address, Destination, Node
from actors.node import register_fanout
from actors.wire_codec import Rejected

from .connection import EncodedFrame, connection_of


def broadcast(group: str, message: str | bytes, *, node: Node | None = None) -> int:
    """Send ``message`` as a frame to every member of ``group``; return how many took it."""
    node = node or actors.current_node()
    remote = node.publish_remote(group, _FRAMES, message)  # first: the other nodes start sooner
    return remote + _deliver(node, node.local_members(group), EncodedFrame.of(message))


def send_frame(dest: Destination, message: str | bytes, *, node: Node | None = None) -> bool:
    """Send ``message`` as a frame to one connection, by address or registered name.

    An unknown name raises NoSuchActor; an ended address is a counted no-op.
    """
    node = node or actors.current_node()
    address = dest if isinstance(dest, Address) else node.whereis(dest)
    if address is None:
        raise actors.NoSuchActor.unregistered(str(dest))
    if address.node != node.name:
        return node.send_remote(address, _FRAME, message)
    return _deliver(node, (address,), EncodedFrame.of(message)) == 1


def send_frames(
    addresses: Iterable[Address], message: str | bytes, *, node: Node | None = None
) -> int:
    """Send ``message`` as a frame to each address (a batch); return how many took it."""
    node = node or actors.current_node()
    local: list[Address] = []
    taken = 0
    for address in addresses:
        if address.node == node.name:
            local.append(address)
        else:
            taken += node.send_remote(address, _FRAME, message)
    return taken + _deliver(node, local, EncodedFrame.of(message))


_FRAMES = "corral.frames"
_FRAME = "corral.frame"


def _frames_to_group(node: Node, group: str, message: str | bytes) -> int:
    return _deliver(node, node.local_members(group), _arrived_frame(message))


def _frame_to_one(node: Node, address: Address, message: str | bytes) -> int:
    return _deliver(node, (address,), _arrived_frame(message))


def _arrived_frame(message: object) -> EncodedFrame:
    """The frame for a message another node sent (Rejected if it is not text or bytes)."""
    if not isinstance(message, str | bytes):
        raise Rejected("malformed envelope", f"a frame of {type(message).__name__}")
    return EncodedFrame.of(message)


register_fanout(_FRAMES, _frames_to_group)
register_fanout(_FRAME, _frame_to_one)


def _deliver(node: Node, addresses: Iterable[Address], frame: EncodedFrame) -> int:
    taken = 0
    for address in addresses:
        actor = node.actor(address)
        if actor is None:
            node.dead_letters += 1
            continue
        connection = connection_of(actor)
        if connection is not None:
            taken += connection.push(frame)
        else:
            taken += actor.mailbox.offer(frame.message)
    return taken
