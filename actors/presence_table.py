"""Who is here, per topic: keys with their metas, and the diffs since the last flush.

Pure data, no I/O and no clock: ``actors.presence`` drives it. A presence is one key (a user
id, say) under a topic with one or more metas (one per tab or device), each with a ref unique
in the cluster and the node that owns it. Changes accumulate until ``flush``, which gives one
``PresenceDiff`` per changed topic, sized by the keys that changed, never by the members:
a key that joined and left within an interval is not in it at all.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

Metas = dict[str, list["Meta"]]
"""A topic's presences (or a diff's half): each key with its metas, oldest first."""


@attrs.frozen(slots=True)
class Meta:
    """One tracked actor's presence under a key: ``data`` is what the app put there."""

    ref: str
    """Unique in the cluster (``<node>#<n>``): tells two tabs of one user apart."""
    node: str
    """The node that owns it (its presences leave when it dies)."""
    data: Mapping[str, Any]


@attrs.frozen
class PresenceDiff:
    """What changed in ``topic`` over one interval, as subscribers receive it.

    ``joins``/``leaves`` hold the metas that came and went per key; ``arrived`` lists the
    keys whose first meta came (a user's first tab), ``departed`` those whose last meta went
    (their last tab closed). A meta replaced by ``update`` is a leave and a join of one key.
    """

    topic: str
    joins: Metas
    leaves: Metas
    arrived: tuple[str, ...]
    departed: tuple[str, ...]

    def __len__(self) -> int:
        """How many metas came and went."""
        return sum(map(len, self.joins.values())) + sum(map(len, self.leaves.values()))


class PresenceTable:
    """Every presence this node knows, its own and its peers', with O(1) counts."""

    def __init__(self) -> None:
        self._topics: dict[str, dict[str, dict[str, Meta]]] = {}
        self._where: dict[str, tuple[str, str]] = {}  # ref -> (topic, key)
        self._by_node: dict[str, set[str]] = {}  # node -> its refs
        self._metas: dict[str, int] = {}  # topic -> how many metas
        self._before: dict[str, dict[str, dict[str, Meta]]] = {}  # as of the last flush

    # ---- changes --------------------------------------------------------------------------

    def add(self, topic: str, key: str, meta: Meta) -> None:
        """Add (or replace, same ref) one meta under ``topic``/``key``."""
        if meta.ref in self._where:
            if self._where[meta.ref] == (topic, key):
                self._touch(topic, key)
                self._topics[topic][key][meta.ref] = meta
                return
            self.remove(meta.ref)
        self._touch(topic, key)
        self._topics.setdefault(topic, {}).setdefault(key, {})[meta.ref] = meta
        self._where[meta.ref] = (topic, key)
        self._by_node.setdefault(meta.node, set()).add(meta.ref)
        self._metas[topic] = self._metas.get(topic, 0) + 1

    def remove(self, ref: str) -> Meta | None:
        """Remove one meta by its ref; None if it is not here."""
        where = self._where.pop(ref, None)
        if where is None:
            return None
        topic, key = where
        self._touch(topic, key)
        keys = self._topics[topic]
        meta = keys[key].pop(ref)
        if not keys[key]:
            del keys[key]
            if not keys:
                del self._topics[topic]
        count = self._metas[topic] - 1
        if count:
            self._metas[topic] = count
        else:
            del self._metas[topic]
        refs = self._by_node[meta.node]
        refs.discard(ref)
        if not refs:
            del self._by_node[meta.node]
        return meta

    def drop_node(self, node: str) -> int:
        """Remove every meta ``node`` owns (it died); how many there were."""
        refs = list(self._by_node.get(node, ()))
        for ref in refs:
            self.remove(ref)
        return len(refs)

    def replace_node(self, node: str, entries: Iterable[tuple[str, str, Meta]]) -> None:
        """Make ``node``'s metas exactly ``entries`` (``(topic, key, meta)``, its snapshot)."""
        stale = set(self._by_node.get(node, ()))
        for topic, key, meta in entries:
            stale.discard(meta.ref)
            if self._where.get(meta.ref) != (topic, key) or self.meta(meta.ref) != meta:
                self.add(topic, key, meta)
        for ref in stale:
            self.remove(ref)

    def _touch(self, topic: str, key: str) -> None:
        """Remember ``key``'s metas as of the last flush, once per interval."""
        before = self._before.setdefault(topic, {})
        if key not in before:
            before[key] = dict(self._topics.get(topic, {}).get(key, {}))

    def flush(self) -> list[PresenceDiff]:
        """The diffs since the last flush, one per topic that changed (none if nothing did)."""
        diffs = []
        for topic, touched in self._before.items():
            keys = self._topics.get(topic, {})
            joins: Metas = {}
            leaves: Metas = {}
            arrived: list[str] = []
            departed: list[str] = []
            for key, before in touched.items():
                now = keys.get(key, {})
                came = [meta for ref, meta in now.items() if before.get(ref) != meta]
                went = [meta for ref, meta in before.items() if now.get(ref) != meta]
                if came:
                    joins[key] = came
                    if not before:
                        arrived.append(key)
                if went:
                    leaves[key] = went
                    if not now:
                        departed.append(key)
            if joins or leaves:
                diffs.append(PresenceDiff(topic, joins, leaves, tuple(arrived), tuple(departed)))
        self._before = {}
        return diffs

    @property
    def pending(self) -> bool:
        """Whether something changed since the last flush."""
        return bool(self._before)

    # ---- reads ----------------------------------------------------------------------------

    def listing(self, topic: str) -> Metas:
        """Every key of ``topic`` with its metas, as of now."""
        return {key: list(metas.values()) for key, metas in self._topics.get(topic, {}).items()}

    def flushed(self, topic: str) -> Metas:
        """``topic`` as of the last flush: what a new subscriber starts from, so that the
        diffs it gets next apply to it exactly."""
        listed = self.listing(topic)
        for key, before in self._before.get(topic, {}).items():
            if before:
                listed[key] = list(before.values())
            else:
                listed.pop(key, None)
        return listed

    def count(self, topic: str) -> int:
        """How many keys are present under ``topic`` (a user with three tabs counts once)."""
        return len(self._topics.get(topic, ()))

    def count_metas(self, topic: str) -> int:
        """How many metas ``topic`` holds (three tabs count three)."""
        return self._metas.get(topic, 0)

    def meta(self, ref: str) -> Meta | None:
        """The meta with ``ref``, or None."""
        where = self._where.get(ref)
        if where is None:
            return None
        topic, key = where
        return self._topics[topic][key][ref]

    def key_of(self, ref: str) -> tuple[str, str] | None:
        """``(topic, key)`` of the meta with ``ref``, or None."""
        return self._where.get(ref)

    def owned_by(self, node: str) -> list[tuple[str, str, Meta]]:
        """Every ``(topic, key, meta)`` that ``node`` owns (its snapshot)."""
        entries = []
        for ref in self._by_node.get(node, ()):
            topic, key = self._where[ref]
            entries.append((topic, key, self._topics[topic][key][ref]))
        return entries

    def count_owned(self, node: str) -> int:
        """How many metas ``node`` owns."""
        return len(self._by_node.get(node, ()))

    def nodes(self) -> list[str]:
        """Every node that owns a presence here."""
        return list(self._by_node)

    def __len__(self) -> int:
        """How many metas, all topics together."""
        return len(self._where)
