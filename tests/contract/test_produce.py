"""The contract suite's produce tests (ferryman.testing.contract.test_produce), collected here."""

from ferryman.testing.contract.test_produce import *  # noqa: F403
