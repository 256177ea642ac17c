"""The contract suite's cleaning tests (ferryman.testing.contract.test_cleaning), collected here."""

from ferryman.testing.contract.test_cleaning import *  # noqa: F403
