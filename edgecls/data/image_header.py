"""An image file's declared width and height, read from its header before anything is decoded.

A 389 KB PNG may declare 20000×20000 pixels: OpenCV then allocates 1.2 GB for it, and more to convert it (2.45 GB
peak in one image folder). OpenCV's own bound (`OPENCV_IO_MAX_IMAGE_PIXELS`, 2^30 pixels) is read once per process
from the environment and sits far above any training image; Pillow reads headers lazily but is not in every install.
So the four common formats' headers are read here (a few bytes each, per their specifications: PNG's IHDR, JPEG's
start-of-frame marker, BMP's info header, WebP's VP8/VP8L/VP8X chunk); other formats answer None and are left to
OpenCV's bound.
"""

from __future__ import annotations

import struct

MAX_PIXELS = 64 * 1024 * 1024  # 8192×8192: far above any classifier's training image, far below a decompression bomb
_JPEG_FRAMES = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header declares them, or None where the format is not one read here or the header is
    cut short (OpenCV then refuses or bounds it)."""
    try:
        if data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR":
            return struct.unpack(">II", data[16:24])
        if data.startswith(b"\xff\xd8"):
            return _jpeg(data)
        if data.startswith(b"BM"):
            width, height = struct.unpack("<ii", data[18:26])
            return abs(width), abs(height)
        if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
            return _webp(data)
    except struct.error:
        return None
    return None


def _jpeg(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 < len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker in _JPEG_FRAMES:
            height, width = struct.unpack(">HH", data[position + 5 : position + 9])
            return width, height
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length field
            position += 2
            continue
        position += 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def too_large(data: bytes) -> str | None:
    """Why the image is refused before decoding (its declared pixels exceed MAX_PIXELS), or None."""
    size = declared_size(data)
    if size is None or size[0] * size[1] <= MAX_PIXELS:
        return None
    return (
        f"declares {size[0]}×{size[1]} pixels, more than edgecls decodes ({MAX_PIXELS:,}; a decompression bomb or a "
        "scan, not a training image)"
    )
