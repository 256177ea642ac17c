"""The contract suite's admin tests (ferryman.testing.contract.test_admin), collected here."""

from ferryman.testing.contract.test_admin import *  # noqa: F403
