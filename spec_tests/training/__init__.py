"""Tests of ``reference.training``."""
