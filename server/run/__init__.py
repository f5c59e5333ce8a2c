"""Running a server: ``corral serve``, its workers and its signals, or inside your own program.

``supervised`` builds the supervision tree (app actors, connections, the listener) and drains it;
``cli`` parses ``corral serve`` (``option_values`` checks each value first); ``workers`` runs N
processes on one port; ``stop_signals`` turns SIGTERM and SIGINT into a drain; ``embed`` is
``server.serving``, the same tree inside a trio program.
"""
