"""Face alignment: rotate a tilted face upright (eyes level) for the generator, and back at paste-back.

Everything happens in the pixel grid of the face's crop window (``CropTransform.box``, ``w`` x
``h``): the window's content is rotated by ``angle`` degrees about the window's centre (OpenCV's
convention: positive = counter-clockwise on screen), sampled from a margin around the window so
the rotated corners hold real photo pixels, then letterboxed as usual. At paste-back the
generator's window-sized output is rotated back by the inverse transform, and the paste mask is
multiplied by where that rotated-back output is defined.
"""

from __future__ import annotations

import math

import numpy as np

from faceswap_pipeline.ops.landmarks import eye_angle


def tilt_degrees(points: np.ndarray) -> float:
    """Roll of a face in degrees (:func:`~faceswap_pipeline.ops.landmarks.eye_angle`; positive: the
    eye on the image's right sits lower, the head tilted clockwise on screen)."""
    return math.degrees(eye_angle(points))


def window_rotation(size_wh: tuple[int, int], angle: float) -> np.ndarray:
    """``(2, 3)`` affine in window pixels that turns the window's content by ``angle`` degrees about its centre.

    Applied to a face tilted by ``tilt_degrees = angle`` it levels the eyes.
    """
    import cv2

    w, h = size_wh
    return cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle), 1.0)


def margin_for(size_wh: tuple[int, int]) -> int:
    """Pixels around the window a rotation by any angle can reach into."""
    return int(math.ceil((math.sqrt(2.0) - 1.0) / 2.0 * max(size_wh))) + 1


def rotated_window(image: np.ndarray, box: tuple[int, int, int, int], angle: float) -> np.ndarray:
    """The crop window's content turned upright: ``(h, w, 3)`` uint8 (outside the photo: black).

    Args:
        image: ``(H, W, 3)`` uint8 RGB photo.
        box: integer window ``(x0, y0, x1, y1)``.
        angle: degrees (see :func:`window_rotation`).
    """
    import cv2

    from faceswap_pipeline.ops.geometry import padded_crop

    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    m = margin_for((w, h))
    big = padded_crop(image, (x0 - m, y0 - m, x1 + m, y1 + m))
    rot = window_rotation((w, h), angle)
    rot[:, 2] -= rot[:, :2] @ np.array([m, m], np.float64)  # input coordinates are the big patch's
    return cv2.warpAffine(big, rot, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def unrotate_window(face: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Turn a window-sized upright face back into the photo's frame.

    Args:
        face: ``(h, w, 3)`` float32 in [0, 255], the generator's output resized to the window.
        angle: the angle the window was rotated by.

    Returns:
        ``(face, valid)``: the face in the photo's frame (``(h, w, 3)`` float32) and ``(h, w)``
        float32 in [0, 1], where that face is defined (0 in the corners the upright square did
        not cover; soft over one pixel).
    """
    import cv2

    h, w = face.shape[:2]
    inv = cv2.invertAffineTransform(window_rotation((w, h), angle))
    back = cv2.warpAffine(np.ascontiguousarray(face, np.float32), inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    valid = cv2.warpAffine(np.ones((h, w), np.float32), inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = cv2.erode(valid, np.ones((3, 3), np.uint8))
    return back, np.clip(valid, 0.0, 1.0)


def rotate_points(points: np.ndarray, box: tuple[int, int, int, int], angle: float) -> np.ndarray:
    """Source-pixel ``(N, 2)`` points mapped into the upright window's frame, back in source pixels
    (as if the window's content had been rotated in place)."""
    x0, y0, x1, y1 = box
    rot = window_rotation((x1 - x0, y1 - y0), angle)
    local = np.asarray(points, np.float64) - (x0, y0)
    return local @ rot[:, :2].T + rot[:, 2] + (x0, y0)


__all__ = ["margin_for", "rotate_points", "rotated_window", "tilt_degrees", "unrotate_window", "window_rotation"]
