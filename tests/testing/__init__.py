"""Tests of ferryman.testing: in this repository (test_harness) and as a user meets it."""
