"""The ``backend`` fixture of the shipped contract suite (ferryman.testing.contract.backend)."""

from ferryman.testing.contract.backend import backend

__all__ = ["backend"]
