"""Tests of ``reference.contract``."""
