"""Tests of ``reference.engine``."""
