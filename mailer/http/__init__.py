"""What the HTTP surfaces share below them: request dependencies and the outage answer."""
