"""Images: dimensions and thumbnails with Pillow, meant to run off the event loop (``ctx.off_loop``).

Owns the decompression-bomb guard: the pixel count is read from the header and checked against
``files.thumbnail_max_pixels`` before any pixel is decoded; Pillow's own bomb check (which raises,
or warns and is turned into an error under strict warning filters) is treated the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

THUMBNAIL_BOX = (320, 320)  # a chat preview; a 320 px PNG of a photo is ~100 KB


@dataclass(frozen=True)
class ImageInfo:
    width: int | None
    height: int | None
    thumbnail: bool  # whether a thumbnail was written


NO_IMAGE = ImageInfo(None, None, False)


def inspect(source: Path, thumbnail_path: Path, max_pixels: int) -> ImageInfo:
    """Read the size of the image at ``source`` and write a PNG thumbnail to ``thumbnail_path``.

    Never raises for bad input: an unreadable image or a bomb gives no thumbnail (and, for an image
    whose header could not be read at all, no dimensions).
    """
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                return NO_IMAGE
            if width * height > max_pixels:
                return ImageInfo(width, height, False)  # a bomb, or just too big to decode: no thumbnail
            image.draft("RGB", THUMBNAIL_BOX)  # JPEG decodes at a reduced scale: less memory and time
            frame = ImageOps.exif_transpose(image)
            frame.thumbnail(THUMBNAIL_BOX)
            if frame.mode not in ("RGB", "RGBA", "L", "LA"):
                frame = frame.convert("RGBA")
            partial = thumbnail_path.with_name(thumbnail_path.name + ".part")
            frame.save(partial, format="PNG", optimize=False)
            os.replace(partial, thumbnail_path)  # a reader never sees half a thumbnail
            return ImageInfo(width, height, True)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return NO_IMAGE
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        # A truncated or corrupt image is still a file people may download; it just has no preview.
        thumbnail_path.with_name(thumbnail_path.name + ".part").unlink(missing_ok=True)
        return NO_IMAGE
