"""The System seam (issue #13): the protocol every system under test implements, its topology
planner and the registry of systems. See docs/architecture.md "The System seam"."""
