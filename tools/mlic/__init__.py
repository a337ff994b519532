"""Library behind the command-line tools in tools/: evaluation, log parsing, plots."""
