"""The one exception type users see: a one-line message that says what was wrong and how to fix it."""


class FlowerError(Exception):
    """A user-facing error; the CLI prints it as one line and the app shows it as a message."""


class ImageError(FlowerError):
    """A file could not be read as an image (empty, truncated, not an image, too large)."""
