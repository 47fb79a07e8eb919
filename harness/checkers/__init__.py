"""Checkers: pure functions over a saved history that return a Verdict (valid / invalid / unknown)."""

from harness.checkers.verdict import Validity, Verdict, compose, guarded

__all__ = ["Validity", "Verdict", "compose", "guarded"]
