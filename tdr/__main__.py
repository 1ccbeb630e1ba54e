"""`python -m tdr` runs the CLI."""

from tdr.cli import app

app()
