"""The contract suite's fixture, when pytest collects the suite from the installed package."""

from ferryman.testing.contract.backend import backend

__all__ = ["backend"]
