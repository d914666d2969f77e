"""Image preprocessing: BGR uint8 (H, W, 3) -> float32 (3, size, size), normalized."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["ImageParams", "preprocess_image"]


@dataclass(frozen=True)
class ImageParams:
    """How a frame becomes the model's image tensor.

    Example:
        >>> p = ImageParams(size=8)
        >>> preprocess_image(np.zeros((6, 10, 3), np.uint8), p).shape
        (3, 8, 8)
    """

    size: int = 64
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)
    color: str = "RGB"
    layout: str = "CHW"

    @classmethod
    def from_dict(cls, d: dict) -> ImageParams:
        return cls(
            size=int(d["size"]),
            mean=tuple(float(v) for v in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(v) for v in d["std"]),  # type: ignore[arg-type]
            color=str(d.get("color", "RGB")),
            layout=str(d.get("layout", "CHW")),
        )

    def to_dict(self) -> dict:
        return {"kind": "image", "size": self.size, "mean": list(self.mean), "std": list(self.std),
                "color": self.color, "layout": self.layout}


def preprocess_image(bgr: np.ndarray, params: ImageParams) -> np.ndarray:
    """Resize (area interpolation), convert colour, scale to [0, 1], normalize, lay out."""
    img = cv2.resize(bgr, (params.size, params.size), interpolation=cv2.INTER_AREA)
    if params.color == "RGB":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    x = img.astype(np.float32) * np.float32(1.0 / 255.0)
    x = (x - np.asarray(params.mean, np.float32)) / np.asarray(params.std, np.float32)
    if params.layout == "CHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32)
