"""The contract suite's offsets tests (ferryman.testing.contract.test_offsets), collected here."""

from ferryman.testing.contract.test_offsets import *  # noqa: F403
