"""Tests of ``reference.data``."""
