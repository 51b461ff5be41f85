"""Errors the subscription domain raises; the API maps each to a 4xx answer."""


class SubscriptionError(Exception):
    """Base for errors caused by the caller's input."""


class InvalidInput(SubscriptionError):
    """A value is malformed or unsafe (bad address, header injection)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class UnknownForm(SubscriptionError):
    pass


class UnknownList(SubscriptionError):
    pass


class NotFound(SubscriptionError):
    pass


class Expired(SubscriptionError):
    """A confirm link past its expiry, or revoked by a later unsubscribe."""


class Conflict(SubscriptionError):
    """The thing exists already (a slug taken)."""
