"""Tests of ``reference/cli.py``: argument parsing, what it prints, exit codes, and the inputs users hand it."""
