"""The application layer: one module per command, each returning results; the CLI parses and prints."""
