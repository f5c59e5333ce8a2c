"""The WebSocket engine: one connection actor per client, its rules and its writes.

``endpoint`` is the connection actor's body (``init``, then the loop); ``core.ConnectionCore``
holds every rule of a connection without I/O (the phase, the outbox, liveness, the close); the
loop in ``connection`` moves bytes between it and a ``transport`` through one writer.
``session`` parses frames, ``inflate`` decompresses within a budget, ``fanout`` writes one
encoded frame to many connections.
"""
