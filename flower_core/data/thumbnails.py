"""Small previews of photos for tables: a data URI a table cell can show as an image."""

from __future__ import annotations

import base64
import io

from flower_core.data.images import ImageSource, load_image
from flower_core.errors import ImageError

THUMBNAIL_PX = 72


def thumbnail_uri(source: ImageSource, size: int = THUMBNAIL_PX) -> str | None:
    """A JPEG data URI of the photo fitted in `size` x `size` pixels, or `None` when it cannot
    be read (a table row keeps its path and simply shows no picture).

    Args:
        source: a path, the file's bytes or an open binary file.
        size: the longest side in pixels. Defaults to `THUMBNAIL_PX`.

    Example:

    >>> thumbnail_uri("data/flowers/daisy/0001.jpg")[:23]
    'data:image/jpeg;base64,'
    """
    try:
        image = load_image(source, draft_size=size)
    except ImageError:
        return None
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
