"""The contract suite's groups tests (ferryman.testing.contract.test_groups), collected here."""

from ferryman.testing.contract.test_groups import *  # noqa: F403
