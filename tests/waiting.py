"""The tests' one wait (``wait_until``, ``eventually``): ``ferryman.testing.waiting``, which
ships in the package for the backend contract suite, under the name the tests import."""

from ferryman.testing.waiting import eventually, wait_until

__all__ = ["eventually", "wait_until"]
