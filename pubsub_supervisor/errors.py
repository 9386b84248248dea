"""The project's exceptions: one root, a shallow tree."""


class PubSubError(Exception):
    """Root of every error this project raises on purpose."""


class ConfigError(PubSubError):
    """A setting is missing or wrong; the message says which and how to fix it."""


class PublishFailed(PubSubError):
    """SNS did not accept an event; the caller keeps it and retries."""


class PoisonMessage(PubSubError):
    """A message can never be processed (malformed, unknown type or version)."""


class RetryLater(PubSubError):
    """A message cannot be processed now; put it back and try again after a delay."""

    def __init__(self, reason: str, delay: int | None = None) -> None:
        super().__init__(reason)
        self.delay = delay
