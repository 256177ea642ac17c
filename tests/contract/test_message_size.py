"""The contract suite's message size tests (ferryman.testing.contract.test_message_size), collected here."""

from ferryman.testing.contract.test_message_size import *  # noqa: F403
