"""A webcam burst as the browser sends it, read into photos for `uploads.add_photos`.

The Dataset page's burst component (`assets/webcam_burst/index.html`) captures frames in the
browser and returns `{"burst": <id>, "frames": ["data:image/jpeg;base64,...", ...]}`. Nothing in
it is trusted: the shape, the frame count and every frame's encoding are checked here, before a
byte is written; the photos then go through the checks, quota and journal every upload does.
"""

from __future__ import annotations

import base64
import binascii

from flower_core.errors import FlowerError

# The most frames one burst may hold, and the choices the page offers.
MAX_BURST = 30
DEFAULT_BURST = 10
# Frames captured per second in the browser.
FRAMES_PER_SECOND = 3
_PREFIX = "data:image/jpeg;base64,"


def burst_id(value: object) -> str | None:
    """The id of a burst the component returned (`None` before the first one)."""
    return str(value["burst"]) if isinstance(value, dict) and "burst" in value else None


def burst_photos(value: object, class_name: str) -> list[tuple[str, bytes]]:
    """The frames of a burst as `(file name, JPEG bytes)` pairs named after the class.

    Args:
        value: what the component returned: a dict with `burst` and `frames`, each frame a
            `data:image/jpeg;base64,` URL.
        class_name: the class the frames go to, for their file names.

    Returns:
        `[("webcam-<class>.jpg", bytes), ...]` (`add_photos` numbers names already taken).

    Raises:
        FlowerError: one line; not a burst, more than `MAX_BURST` frames, or a frame that is not
            a base64 JPEG.

    Example:
        >>> burst_photos({"burst": "1", "frames": [url]}, "rose")
        [('webcam-rose.jpg', b'\\xff\\xd8...')]
    """
    frames = value.get("frames") if isinstance(value, dict) else None
    if not isinstance(frames, list) or not frames:
        raise FlowerError(f"no frames in the burst. Received: {type(value).__name__}")
    if len(frames) > MAX_BURST:
        raise FlowerError(f"at most {MAX_BURST} frames in a burst. Received: {len(frames)}")
    photos = []
    for number, frame in enumerate(frames, 1):
        if not isinstance(frame, str) or not frame.startswith(_PREFIX):
            raise FlowerError(f"frame {number} is not a JPEG data URL. Received: {str(frame)[:30]!r}")
        try:
            data = base64.b64decode(frame[len(_PREFIX) :], validate=True)
        except (binascii.Error, ValueError):
            raise FlowerError(f"frame {number} is not valid base64") from None
        photos.append((f"webcam-{class_name}.jpg", data))
    return photos
