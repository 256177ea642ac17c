"""The contract suite's group admin tests (ferryman.testing.contract.test_group_admin), collected here."""

from ferryman.testing.contract.test_group_admin import *  # noqa: F403
