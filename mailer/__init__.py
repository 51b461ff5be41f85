"""mailer: a self-hosted newsletter system for news publishers."""

__version__ = "0.1.0"
