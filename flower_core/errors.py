"""The one exception type users see: a one-line message that says what was wrong and how to fix it."""


class FlowerError(Exception):
    """A user-facing error; the CLI prints it as one line and the app shows it as a message."""


class ImageError(FlowerError):
    """A file could not be read as an image (empty, truncated, not an image, too large)."""


def one_line(error: BaseException, limit: int = 300) -> str:
    """An exception as the one line a user sees: a `FlowerError`'s own message; for any other
    error its type too, since a bare `KeyError` says only `'lite'`. Cut at `limit` characters.

    Example:

    >>> one_line(KeyError("lite"))
    "KeyError: 'lite'"
    """
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if not isinstance(error, FlowerError):
        text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text[:limit]
