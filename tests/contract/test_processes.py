"""The contract suite's processes tests (ferryman.testing.contract.test_processes), collected here."""

from ferryman.testing.contract.test_processes import *  # noqa: F403
