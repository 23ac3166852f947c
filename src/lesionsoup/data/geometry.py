"""The geometry record: how a native photograph maps onto its cached square.

Preprocessing crops the field of view's bounding box out of the native image,
scales it by one factor so that its longer side equals ``size``, and pads the
shorter side symmetrically to a ``size`` x ``size`` square. The record keeps
exactly what is needed to map pixels and whole prediction maps both ways.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Geometry:
    native_h: int
    native_w: int
    crop_y0: int
    crop_x0: int
    crop_y1: int  # exclusive
    crop_x1: int  # exclusive
    size: int
    resized_h: int
    resized_w: int
    pad_top: int
    pad_left: int

    @classmethod
    def fit(
        cls, native_h: int, native_w: int, crop: tuple[int, int, int, int], size: int
    ) -> Geometry:
        """The record for a crop box ``(y0, x0, y1, x1)`` fitted into a ``size`` square."""
        y0, x0, y1, x1 = crop
        crop_h, crop_w = y1 - y0, x1 - x0
        if crop_h <= 0 or crop_w <= 0:
            raise ValueError(f"empty crop box {crop}")
        scale = size / max(crop_h, crop_w)
        resized_h = min(size, max(1, round(crop_h * scale)))
        resized_w = min(size, max(1, round(crop_w * scale)))
        return cls(
            native_h=native_h,
            native_w=native_w,
            crop_y0=y0,
            crop_x0=x0,
            crop_y1=y1,
            crop_x1=x1,
            size=size,
            resized_h=resized_h,
            resized_w=resized_w,
            pad_top=(size - resized_h) // 2,
            pad_left=(size - resized_w) // 2,
        )

    @property
    def scale_y(self) -> float:
        return self.resized_h / (self.crop_y1 - self.crop_y0)

    @property
    def scale_x(self) -> float:
        return self.resized_w / (self.crop_x1 - self.crop_x0)

    def to_cache(
        self, y: np.ndarray | float, x: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Continuous native pixel coordinates (pixel centres at .5) to cache coordinates."""
        cy = (np.asarray(y, dtype=float) - self.crop_y0) * self.scale_y + self.pad_top
        cx = (np.asarray(x, dtype=float) - self.crop_x0) * self.scale_x + self.pad_left
        return cy, cx

    def to_native(
        self, y: np.ndarray | float, x: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray]:
        """Continuous cache coordinates to native pixel coordinates (inverse of ``to_cache``)."""
        ny = (np.asarray(y, dtype=float) - self.pad_top) / self.scale_y + self.crop_y0
        nx = (np.asarray(x, dtype=float) - self.pad_left) / self.scale_x + self.crop_x0
        return ny, nx

    def map_to_native(self, plane: np.ndarray, fill: float = 0) -> np.ndarray:
        """A cache-resolution map (size, size[, C]) resampled onto the native pixel grid.

        Outside the crop box the result is ``fill``; probabilities are resampled
        bilinearly, so pass a float map and threshold afterwards.
        """
        if plane.shape[:2] != (self.size, self.size):
            raise ValueError(f"expected a {self.size}x{self.size} map, got {plane.shape[:2]}")
        inner = plane[
            self.pad_top : self.pad_top + self.resized_h,
            self.pad_left : self.pad_left + self.resized_w,
        ]
        crop_h, crop_w = self.crop_y1 - self.crop_y0, self.crop_x1 - self.crop_x0
        resized = cv2.resize(inner, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR)
        out = np.full((self.native_h, self.native_w, *plane.shape[2:]), fill, dtype=plane.dtype)
        out[self.crop_y0 : self.crop_y1, self.crop_x0 : self.crop_x1] = resized.reshape(
            crop_h, crop_w, *plane.shape[2:]
        )
        return out

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
