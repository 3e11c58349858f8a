"""Tests of ``reference.app``."""
