"""One error type for every backend, so callers can degrade without knowing the SDK."""


class BackendError(RuntimeError):
    """A backend could not be reached or refused the call; the message names which."""
