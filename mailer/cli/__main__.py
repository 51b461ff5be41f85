"""`python -m mailer.cli`: the `mailer` command without its console script."""

from mailer.cli import app

app()
