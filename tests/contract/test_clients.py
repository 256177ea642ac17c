"""The contract suite's clients tests (ferryman.testing.contract.test_clients), collected here."""

from ferryman.testing.contract.test_clients import *  # noqa: F403
