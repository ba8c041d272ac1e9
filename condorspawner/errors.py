"""The spawner's own error: a spawn that cannot succeed, with a message for the user."""


class SpawnError(RuntimeError):
    """A spawn that cannot succeed; the message is shown to the user."""
