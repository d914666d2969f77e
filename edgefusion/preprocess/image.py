"""Image preprocessing: BGR uint8 (H, W, 3) -> the model's image tensor.

Square (``size``) or any ``width`` x ``height``; ``resize`` by ``stretch`` (the default) or
``letterbox`` (aspect kept, borders filled with ``pad``); float32 normalized by ``mean`` and
``std``, or uint8 as is (``dtype``); ``CHW`` or ``HWC`` layout (NCHW / NHWC once batched).
:class:`Geometry` maps model-input pixels back to frame pixels (detection boxes).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from edgefusion.errors import ConfigError

__all__ = ["Geometry", "ImageParams", "fit_image", "preprocess_image"]

RESIZE_MODES = ("stretch", "letterbox")


@dataclass(frozen=True)
class Geometry:
    """How a frame was placed in the model input: ``input = frame * scale + offset``, per axis."""

    scale_x: float = 1.0
    scale_y: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    #: the model input's and the frame's width and height, pixels (0: unknown)
    input_w: int = 0
    input_h: int = 0
    frame_w: int = 0
    frame_h: int = 0

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x1, y1, x2, y2 boxes in model-input pixels -> frame pixels, clipped to the frame.

        Example:
            >>> Geometry(0.5, 0.5, 0.0, 10.0, 40, 40, 80, 60).to_frame(np.array([[0.0, 10.0, 20.0, 50.0]])).tolist()
            [[0.0, 0.0, 40.0, 60.0]]
        """
        b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
        b[:, 0::2] = (b[:, 0::2] - self.dx) / self.scale_x
        b[:, 1::2] = (b[:, 1::2] - self.dy) / self.scale_y
        if self.frame_w and self.frame_h:
            b[:, 0::2] = b[:, 0::2].clip(0, self.frame_w)
            b[:, 1::2] = b[:, 1::2].clip(0, self.frame_h)
        return b


@dataclass(frozen=True)
class ImageParams:
    """How a frame becomes the model's image tensor.

    Example:
        >>> p = ImageParams(size=8)
        >>> preprocess_image(np.zeros((6, 10, 3), np.uint8), p).shape
        (3, 8, 8)
        >>> q = ImageParams(width=8, height=4, resize="letterbox", dtype="uint8", layout="HWC")
        >>> preprocess_image(np.zeros((6, 10, 3), np.uint8), q).shape
        (4, 8, 3)
    """

    size: int = 64
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    color: str = "RGB"
    layout: str = "CHW"
    #: a non-square input's sides (both or neither; ``size`` then unused)
    width: int | None = None
    height: int | None = None
    resize: str = "stretch"
    dtype: str = "float32"
    pad: int = 114

    @property
    def w(self) -> int:
        return self.width or self.size

    @property
    def h(self) -> int:
        return self.height or self.size

    @classmethod
    def from_dict(cls, d: dict, dtype: str | None = None) -> ImageParams:
        """From a manifest's ``preprocess`` block (v1: ``size``, ``mean``, ``std``; v2 adds the rest)."""
        w, h = d.get("width"), d.get("height")
        if (w is None) != (h is None):
            raise ConfigError("image: give both width and height, or size for a square input")
        if w is None and "size" not in d:
            raise ConfigError("image: give size (square) or width and height")
        p = cls(
            size=int(d.get("size", w or 0)),
            mean=tuple(float(v) for v in d.get("mean", (0.0, 0.0, 0.0))),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d.get("std", (1.0, 1.0, 1.0))),  # type: ignore[arg-type]
            color=str(d.get("color", "RGB")),
            layout=str(d.get("layout", "CHW")),
            width=None if w is None else int(w), height=None if h is None else int(h),
            resize=str(d.get("resize", "stretch")), dtype=str(d.get("dtype", dtype or "float32")),
            pad=int(d.get("pad", 114)),
        )
        if p.resize not in RESIZE_MODES:
            raise ConfigError(f"image resize {p.resize!r}: expected one of {RESIZE_MODES}")
        if p.dtype not in ("float32", "uint8"):
            raise ConfigError(f"image dtype {p.dtype!r}: expected 'float32' or 'uint8'")
        if len(p.mean) != 3 or len(p.std) != 3 or not all(s > 0 for s in p.std):
            raise ConfigError("image mean and std: expected three numbers each, std positive")
        _blob_params(p)  # layout and colour are checked here
        return p

    def to_dict(self) -> dict:
        d = {"kind": "image", "size": self.size, "mean": list(self.mean), "std": list(self.std),
             "color": self.color, "layout": self.layout}
        if self.width is not None:
            d.update(width=self.width, height=self.height)
        if (self.resize, self.dtype, self.pad) != ("stretch", "float32", 114):
            d.update(resize=self.resize, dtype=self.dtype, pad=self.pad)
        return d

    @property
    def shape(self) -> tuple[int, int, int]:
        return (3, self.h, self.w) if self.layout == "CHW" else (self.h, self.w, 3)


def fit_image(bgr: np.ndarray, params: ImageParams) -> tuple[np.ndarray, Geometry]:
    """The frame resized to the input's width x height (stretched or letterboxed), and where it went."""
    fh, fw = bgr.shape[:2]
    w, h = params.w, params.h
    if params.resize == "stretch":
        return cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA), Geometry(w / fw, h / fh, 0, 0, w, h, fw, fh)
    r = min(w / fw, h / fh)
    nw, nh = max(1, round(fw * r)), max(1, round(fh * r))
    left, top = (w - nw) // 2, (h - nh) // 2
    img = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    img = cv2.copyMakeBorder(img, top, h - nh - top, left, w - nw - left, cv2.BORDER_CONSTANT,
                             value=(params.pad,) * 3)
    return img, Geometry(nw / fw, nh / fh, float(left), float(top), w, h, fw, fh)


def preprocess_image(bgr: np.ndarray, params: ImageParams) -> np.ndarray:
    """Resize, convert colour, then (float32) scale to [0, 1] and normalize, and lay out.

    After the resize, one OpenCV call (``blobFromImageWithParams``) does the colour swap,
    the per-channel ``(x / 255 - mean) / std`` and the CHW layout: a fifth of the time of
    the same steps in numpy, and the same values to float rounding.
    """
    return preprocess_image_geometry(bgr, params)[0]


def preprocess_image_geometry(bgr: np.ndarray, params: ImageParams) -> tuple[np.ndarray, Geometry]:
    """:func:`preprocess_image` and the :class:`Geometry` of the placement."""
    img, geo = fit_image(bgr, params)
    if params.dtype == "uint8":
        x = img[:, :, ::-1] if params.color == "RGB" else img
        x = x.transpose(2, 0, 1) if params.layout == "CHW" else x
        return np.ascontiguousarray(x, dtype=np.uint8), geo
    x = cv2.dnn.blobFromImageWithParams(img, _blob_params(params))[0]  # (3, h, w)
    if params.layout == "HWC":
        x = x.transpose(1, 2, 0)
    return np.ascontiguousarray(x, dtype=np.float32), geo


@lru_cache(maxsize=8)
def _blob_params(params: ImageParams) -> cv2.dnn.Image2BlobParams:
    if params.layout not in ("CHW", "HWC"):
        raise ConfigError(f"image layout {params.layout!r}: expected 'CHW' or 'HWC'")
    if params.color not in ("RGB", "BGR"):
        raise ConfigError(f"image color {params.color!r}: expected 'RGB' or 'BGR'")
    b = cv2.dnn.Image2BlobParams()
    b.ddepth = cv2.CV_32F
    b.swapRB = params.color == "RGB"
    b.mean = (*(255.0 * m for m in params.mean), 0.0)  # in output channel order: (x - mean) * scalefactor
    b.scalefactor = (*(1.0 / (255.0 * s) for s in params.std), 0.0)
    return b
