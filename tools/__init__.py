"""Command-line tools of the project (run with ``python -m tools.NAME``)."""
