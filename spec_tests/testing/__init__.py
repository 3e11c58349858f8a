"""Tests of ``reference.testing``: what users import in their own tests (the pytest plugin, the fixture generator)."""
