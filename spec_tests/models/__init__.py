"""Tests of ``reference.models``."""
