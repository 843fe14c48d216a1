"""A cheap structural check of JPEG bytes that also yields the image size.

Decoding every image would dominate conversion time (a full decode costs far more
than copying the bytes), so ``convert`` checks structure instead: the start-of-image
marker, a frame header (which gives width and height) and the end-of-image marker at
the tail, which a truncated file lacks. ``convert --decode-check`` adds a full decode
that also catches most damage inside the compressed data (see ``decode_check``).
"""

from __future__ import annotations

import io

__all__ = ["JpegError", "jpeg_size", "decode_check"]

# Start-of-frame markers carry the size; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
TAIL = 64  # EOI may be followed by a few padding bytes in files written by some cameras


class JpegError(ValueError):
    """The bytes are not a complete JPEG."""


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) of JPEG ``data``; :class:`JpegError` if it is not a whole JPEG."""
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise JpegError("does not start with the JPEG start-of-image marker FFD8")
    if b"\xff\xd9" not in data[-TAIL:]:
        raise JpegError("has no JPEG end-of-image marker FFD9 at its end (truncated file?)")
    pos = 2
    n = len(data)
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise JpegError(f"corrupt JPEG header: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker in _SOF:
            if pos + 9 > n:
                break
            height = int.from_bytes(data[pos + 5 : pos + 7], "big")
            width = int.from_bytes(data[pos + 7 : pos + 9], "big")
            if width == 0 or height == 0:
                raise JpegError(f"frame header gives an empty image {width}x{height}")
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        pos += 2 + length
    raise JpegError("corrupt JPEG header: no frame header (SOF) found")


def decode_check(data: bytes) -> None:
    """Fully decode ``data``; :class:`JpegError` on any damage libjpeg notices.

    Pillow (and OpenCV) only *warn* when libjpeg meets corrupt entropy-coded data
    ("premature end of data segment", "bad Huffman code") and return an image
    anyway, so a damaged body passed Pillow's decode. simplejpeg drives
    libjpeg-turbo with its warnings as errors (``strict=True``). Damage that leaves
    a valid bit stream (a flipped bit inside a coefficient) decodes to other
    pixels and no decoder can see it; ``benchmarks/decode_check.py`` measures the
    catch rate. Grayscale and CMYK files, which simplejpeg does not convert, are
    decoded by Pillow instead.
    """
    import simplejpeg

    try:
        simplejpeg.decode_jpeg(data, colorspace="rgb", strict=True)
        return
    except ValueError as exc:
        message = str(exc)
    if "colorspace" in message.lower() or "unsupported" in message.lower():
        from PIL import Image  # here: every other path (and `reiddata stats`) runs without Pillow

        try:
            with Image.open(io.BytesIO(data)) as image:
                image.load()
            return
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError...
            message = str(exc)
    raise JpegError(f"does not decode cleanly ({message})")
