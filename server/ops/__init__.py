"""Operating a server: what it counts, what it logs, and what it shows an operator.

``stats`` holds a node's counters (read at scrape time, never per message), ``metrics`` turns
them into Prometheus metrics, ``watchdog`` and ``loop_view`` report a blocked loop, ``heap_trim``
and ``gc_tuning`` keep memory in check, ``dashboard`` is the live page.
"""
