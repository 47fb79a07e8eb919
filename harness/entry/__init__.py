"""The entry points, the top layer: the pytest plugin (``plugin``) and the ``raftchaos`` CLI (``cli``).

They compose the layers below them: the core (the rest of ``harness``: systems, backends, topology,
cluster, history, checkers) at the bottom, ``faults`` and ``reports`` above it, and these on top. Nothing
below imports from here (import-linter contracts in pyproject.toml).
"""
