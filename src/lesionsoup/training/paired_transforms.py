"""torchvision-style transforms as albumentations steps over an image and its label plane.

FissionFusion's presets use two transforms albumentations 2.0 has no equal
for in a patch pipeline:

``PatchResizedCrop``  torchvision's ``RandomResizedCrop`` sampling (10 tries of
                      a uniform area fraction and a log-uniform aspect, then a
                      centred fallback), resized back to the input's own size,
                      so that a patch stays a patch. Unlike albumentations'
                      ``RandomResizedCrop`` it needs no output size and accepts
                      an area fraction above 1, as torchvision does: such a
                      draw never fits and is drawn again.
``PairedRandAugment`` torchvision's ``RandAugment`` (its own operation table,
                      magnitudes and operations); the geometric operations
                      also move the label plane, with nearest neighbour and
                      fill 0, and the colour operations touch the image only.

Both draw from the generators albumentations hands every step (seeded per
sample by ``augment.augment``), never from torch's global generator, so a
sample stays a pure function of (seed, index).
"""

from __future__ import annotations

import math
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.core.transforms_interface import BaseTransformInitSchema
from pydantic import Field
from torchvision.transforms.v2 import InterpolationMode, RandAugment

#: torchvision's tries before its centred fallback crop.
_CROP_TRIES = 10
#: RandAugment operations that move pixels; every other one only recolours them.
GEOMETRIC_OPERATIONS = frozenset({"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"})


class PatchResizedCrop(A.DualTransform):
    """A random crop of ``scale`` x the input area and aspect in ``ratio``, resized back.

    The image is resized bilinearly, the label plane with nearest neighbour
    on the same pixel-centre grid (OpenCV's ``INTER_NEAREST`` rounds down, up to a pixel
    off it). Crops never exceed the input, so the resize only enlarges
    (torchvision's antialiasing, which acts on shrinking, has nothing to do here).
    """

    class InitSchema(BaseTransformInitSchema):
        scale: tuple[float, float]
        ratio: tuple[float, float]

    def __init__(
        self,
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if not 0 < scale[0] <= scale[1] or not 0 < ratio[0] <= ratio[1]:
            raise ValueError(f"scale {scale} and ratio {ratio} must be positive, low <= high")
        self.scale = scale
        self.ratio = ratio

    def _box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, crop height, crop width), drawn as torchvision draws them."""
        log_low, log_high = math.log(self.ratio[0]), math.log(self.ratio[1])
        for _ in range(_CROP_TRIES):
            area = height * width * self.py_random.uniform(*self.scale)
            aspect = math.exp(self.py_random.uniform(log_low, log_high))
            crop_w, crop_h = round(math.sqrt(area * aspect)), round(math.sqrt(area / aspect))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = self.py_random.randint(0, height - crop_h)
                return top, self.py_random.randint(0, width - crop_w), crop_h, crop_w
        aspect = width / height  # fallback: the largest centred crop of an allowed aspect
        crop_w = width if aspect <= self.ratio[1] else round(height * self.ratio[1])
        crop_h = height if aspect >= self.ratio[0] else round(width / self.ratio[0])
        return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        return {"box": self._box(*params["shape"][:2])}

    @staticmethod
    def _crop_resize(
        array: np.ndarray, box: tuple[int, int, int, int], interpolation: int
    ) -> np.ndarray:
        top, left, crop_h, crop_w = box
        crop = array[top : top + crop_h, left : left + crop_w]
        size = (array.shape[1], array.shape[0])
        return cv2.resize(np.ascontiguousarray(crop), size, interpolation=interpolation)

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        return self._crop_resize(img, box, cv2.INTER_LINEAR)

    def apply_to_mask(
        self, mask: np.ndarray, box: tuple[int, int, int, int], **params: Any
    ) -> np.ndarray:
        return self._crop_resize(mask, box, cv2.INTER_NEAREST_EXACT)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("scale", "ratio")


class PairedRandAugment(A.DualTransform):
    """torchvision's ``RandAugment(num_ops, magnitude, num_magnitude_bins, interpolation)``.

    Each of ``num_ops`` operations is drawn uniformly from torchvision's table,
    with its magnitude at bin ``magnitude`` negated with probability 1/2 where
    the table says signed, as torchvision draws them. Borders brought in by
    the geometric operations are 0 in the image and in the label plane.
    """

    class InitSchema(BaseTransformInitSchema):
        num_ops: int = Field(ge=0)
        magnitude: int = Field(ge=0)
        num_magnitude_bins: int = Field(ge=1)
        interpolation: str

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        interpolation: str = "nearest",
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if magnitude >= num_magnitude_bins:
            raise ValueError(f"magnitude {magnitude} must be below num_magnitude_bins")
        self.num_ops = num_ops
        self.magnitude = magnitude
        self.num_magnitude_bins = num_magnitude_bins
        self.interpolation = interpolation
        self._torchvision = RandAugment(num_ops, magnitude, num_magnitude_bins, interpolation)

    def _draw(self, height: int, width: int) -> tuple[str, float]:
        space = self._torchvision._AUGMENTATION_SPACE
        name = self.py_random.choice(list(space))
        magnitudes_fn, signed = space[name]
        magnitudes = magnitudes_fn(self.num_magnitude_bins, height, width)
        if magnitudes is None:
            return name, 0.0
        magnitude = float(magnitudes[self.magnitude])
        return name, -magnitude if signed and self.py_random.random() <= 0.5 else magnitude

    def get_params_dependent_on_data(
        self, params: dict[str, Any], data: dict[str, Any]
    ) -> dict[str, Any]:
        height, width = params["shape"][:2]
        return {"operations": [self._draw(height, width) for _ in range(self.num_ops)]}

    def _run(
        self, tensor: torch.Tensor, operations: list[tuple[str, float]], label: bool
    ) -> torch.Tensor:
        mode = InterpolationMode.NEAREST if label else self._torchvision.interpolation
        for name, magnitude in operations:
            if not label or name in GEOMETRIC_OPERATIONS:
                tensor = self._torchvision._apply_image_or_video_transform(
                    tensor, name, magnitude, interpolation=mode, fill=self._torchvision._fill
                )
        return tensor

    def apply(
        self, img: np.ndarray, operations: list[tuple[str, float]], **params: Any
    ) -> np.ndarray:
        tensor = torch.from_numpy(np.require(img, requirements="W")).permute(2, 0, 1)
        out = self._run(tensor, operations, label=False)
        return np.ascontiguousarray(out.permute(1, 2, 0).numpy())

    def apply_to_mask(
        self, mask: np.ndarray, operations: list[tuple[str, float]], **params: Any
    ) -> np.ndarray:
        tensor = torch.from_numpy(np.require(mask, requirements="W"))[None]
        return self._run(tensor, operations, label=True)[0].numpy()

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("num_ops", "magnitude", "num_magnitude_bins", "interpolation")
