"""Tests of ``reference.reporting``."""
