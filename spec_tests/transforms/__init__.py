"""Tests of ``reference.transforms``."""
