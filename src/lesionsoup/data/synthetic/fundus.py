"""Synthetic fundus photographs with the true masks of the lesions drawn into them.

A photograph is a circular field of view on black: an orange-red, vignetted
background with low-frequency texture, a vessel tree branching out of a bright
optic disc, a darker macula, and the four trained lesions drawn with their
clinical look (plus IRMA and NV on request). Every lesion is first drawn as a
mask and then blended into the image through that mask, so the image shows a
lesion exactly where its mask says.

Sizes are given in *reference pixels*: pixels of a fundus of radius
``REFERENCE_RADIUS``; a photograph scales them by ``unit`` (its fundus radius
over the reference), so a quarter-size image gets quarter-size lesions.
``lesion_sizes`` enlarges chosen classes beyond that (the demo's small caches
would otherwise shrink microaneurysms below a pixel).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from lesionsoup.core.lesions import Lesion

#: Fundus radius (px) at which the lesion sizes below are given (a ~1400 px fundus).
REFERENCE_RADIUS = 700.0

RGB = tuple[float, float, float]
MA_COLOUR: RGB = (95.0, 8.0, 6.0)
HE_COLOUR: RGB = (78.0, 6.0, 4.0)
EX_COLOUR: RGB = (250.0, 232.0, 95.0)
CWS_COLOUR: RGB = (240.0, 232.0, 215.0)
VESSEL_COLOUR: RGB = (120.0, 22.0, 12.0)
DISC_COLOUR: RGB = (252.0, 228.0, 150.0)


@dataclass(frozen=True)
class SyntheticFundus:
    """One rendered photograph and the ground truth drawn into it."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    lesions: dict[Lesion, np.ndarray]  # (H, W) bool per rendered lesion class, maybe empty
    fov: np.ndarray  # (H, W) bool field of view
    optic_disc: np.ndarray  # (H, W) bool
    vessels: np.ndarray  # (H, W) bool
    unit: float  # image pixels per reference pixel


@dataclass(frozen=True)
class _Anatomy:
    centre: tuple[float, float]  # (y, x) of the field of view
    radius: float
    disc: tuple[float, float]  # (y, x)
    disc_radius: float
    macula: tuple[float, float]
    side: int  # +1: disc right of the macula (right eye as photographed), -1: left
    sizes: Mapping[Lesion, float] = field(default_factory=dict)  # size factor per class

    @property
    def unit(self) -> float:
        return self.radius / REFERENCE_RADIUS

    def lesion_unit(self, lesion: Lesion) -> float:
        """Image pixels per reference pixel of ``lesion``'s shapes."""
        return self.unit * self.sizes.get(lesion, 1.0)


def render_fundus(
    rng: np.random.Generator,
    height: int,
    width: int,
    lesion_density: float = 1.0,
    extras: bool = False,
    cws_probability: float = 0.5,
    lesion_sizes: Mapping[Lesion, float] | None = None,
) -> SyntheticFundus:
    """Render one photograph of ``height`` x ``width`` pixels.

    ``lesion_density`` scales the expected number of every lesion (0: a healthy
    eye); cotton-wool spots appear on a ``cws_probability`` share of diseased
    eyes. ``extras`` adds IRMA and NV (each on some images only).
    ``lesion_sizes`` multiplies the sizes of the classes it names (default 1).
    """
    if height < 32 or width < 32:
        raise ValueError(f"a synthetic fundus needs at least 32x32 pixels, got {height}x{width}")
    if lesion_density < 0:
        raise ValueError(f"lesion_density must be >= 0, got {lesion_density}")
    sizes = dict(lesion_sizes or {})
    if any(factor <= 0 for factor in sizes.values()):
        raise ValueError(f"lesion_sizes must be > 0, got {sizes}")
    anatomy = replace(_place_anatomy(rng, height, width), sizes=sizes)
    rho = _distance((height, width), anatomy.centre) / anatomy.radius
    fov = rho <= 1.0

    image = _background(rng, height, width, rho, anatomy)
    disc = _disc(image, anatomy)
    vessel_alpha = _vessel_tree(rng, height, width, anatomy)
    _blend(image, vessel_alpha * 0.75, VESSEL_COLOUR)

    lesions = _draw_lesions(rng, (height, width), anatomy, lesion_density, extras, cws_probability)
    lesions = {lesion: mask & fov for lesion, mask in lesions.items()}
    _paint_lesions(image, lesions, anatomy.unit)

    image += rng.standard_normal((height, width, 1), dtype=np.float32) * 2.0
    image *= fov[..., None]
    fov = _decorate(rng, image, fov, anatomy)
    return SyntheticFundus(
        image=np.clip(image, 0, 255).round().astype(np.uint8),
        lesions={lesion: mask & fov for lesion, mask in lesions.items()},
        fov=fov,
        optic_disc=disc & fov,
        vessels=(vessel_alpha > 0.5) & fov,
        unit=anatomy.unit,
    )


def _place_anatomy(rng: np.random.Generator, height: int, width: int) -> _Anatomy:
    radius = 0.5 * min(height, width) * rng.uniform(0.93, 0.99)
    centre = ((height - 1) / 2 + rng.uniform(-0.01, 0.01) * height, (width - 1) / 2)
    side = 1 if rng.random() < 0.5 else -1
    macula = (
        centre[0] + rng.uniform(-0.05, 0.05) * radius,
        centre[1] - side * rng.uniform(0.0, 0.1) * radius,
    )
    disc = (
        macula[0] - rng.uniform(0.0, 0.12) * radius,
        macula[1] + side * rng.uniform(0.5, 0.6) * radius,
    )
    return _Anatomy(centre, radius, disc, rng.uniform(0.085, 0.11) * radius, macula, side)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int) -> np.ndarray:
    """A low-frequency field in about [-1, 1]: coarse Gaussian noise, upsampled cubically."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)


def _background(
    rng: np.random.Generator, height: int, width: int, rho: np.ndarray, anatomy: _Anatomy
) -> np.ndarray:
    base = np.array([205.0, 92.0, 38.0], dtype=np.float32) * rng.uniform(0.85, 1.1, 3)
    texture = 1.0 + 0.07 * _smooth_noise(rng, height, width, 6)
    texture += 0.03 * _smooth_noise(rng, height, width, 28)
    vignette = np.clip(1.0 - 0.5 * rho**2.5, 0.25, 1.0).astype(np.float32)
    macula_distance = _distance((height, width), anatomy.macula) / (0.16 * anatomy.radius)
    macula = 1.0 - 0.35 * np.exp(-(macula_distance**2))
    shade = texture * vignette * macula
    return shade[..., None] * base


def _distance(
    shape: tuple[int, int], centre: tuple[float, float], offset: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """Distance (float32) to ``centre`` of each pixel of a grid whose corner is ``offset``."""
    yy = np.arange(offset[0], offset[0] + shape[0], dtype=np.float32)[:, None] - centre[0]
    xx = np.arange(offset[1], offset[1] + shape[1], dtype=np.float32)[None, :] - centre[1]
    return np.sqrt(yy * yy + xx * xx)


def _disc(image: np.ndarray, anatomy: _Anatomy) -> np.ndarray:
    """Blend the bright optic disc (and its glow, within 5 disc radii) into ``image``.

    Returns the disc's mask.
    """
    height, width = image.shape[:2]
    reach = 5 * anatomy.disc_radius
    top, left = (max(0, int(c - reach)) for c in anatomy.disc)
    bottom = min(height, int(anatomy.disc[0] + reach) + 1)
    right = min(width, int(anatomy.disc[1] + reach) + 1)
    window = np.s_[top:bottom, left:right]
    distance = _distance((bottom - top, right - left), anatomy.disc, (top, left))
    distance /= anatomy.disc_radius
    alpha = np.clip(0.9 * np.exp(-(distance**6)) + 0.35 * np.exp(-(distance**2) / 4), 0, 1)
    _blend(image[window], alpha, DISC_COLOUR)
    mask = np.zeros((height, width), dtype=bool)
    mask[window] = distance <= 1.0
    return mask


def _vessel_tree(
    rng: np.random.Generator, height: int, width: int, anatomy: _Anatomy
) -> np.ndarray:
    """Anti-aliased vessel opacity (H, W) float32 in [0, 1], vessels thinner further out."""
    canvas = np.zeros((height, width), dtype=np.uint8)
    step = 0.035 * anatomy.radius
    (disc_y, disc_x), (macula_y, macula_x) = anatomy.disc, anatomy.macula
    towards_macula = np.arctan2(macula_y - disc_y, macula_x - disc_x)
    trunks = [  # (start angle, turn per step): arcades curve around the macula, nasal ones fan out
        (towards_macula - 1.1, 0.09),
        (towards_macula + 1.1, -0.09),
        (towards_macula + np.pi - 0.7, -0.02),
        (towards_macula + np.pi + 0.7, 0.02),
    ]
    stack = [
        (anatomy.disc, angle + rng.normal(0, 0.1), turn, 18.0 * anatomy.unit, 0)
        for angle, turn in trunks
    ]
    while stack:
        (y, x), angle, turn, thickness, depth = stack.pop()
        for _ in range(int(rng.integers(10, 24)) if depth else 30):
            angle += turn + rng.normal(0, 0.12)
            ny, nx = y + step * np.sin(angle), x + step * np.cos(angle)
            if np.hypot(ny - anatomy.centre[0], nx - anatomy.centre[1]) > anatomy.radius:
                break
            width_px = max(1, round(thickness))
            start, end = (round(x * 16), round(y * 16)), (round(nx * 16), round(ny * 16))
            cv2.line(canvas, start, end, 255, width_px, cv2.LINE_AA, shift=4)
            y, x = ny, nx
            thickness *= 0.975
            if depth < 2 and rng.random() < 0.1:
                branch = angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.1)
                stack.append(((y, x), branch, rng.normal(0, 0.04), thickness * 0.65, depth + 1))
    return canvas.astype(np.float32) / 255.0


def _scatter(
    rng: np.random.Generator, count: int, around: tuple[float, float], spread: float
) -> np.ndarray:
    """``count`` (y, x) points, Gaussian around a centre."""
    return np.asarray(around) + rng.normal(0, spread, (count, 2))


def _ellipse(
    mask: np.ndarray, centre: np.ndarray, axes: tuple[float, float], angle_deg: float
) -> None:
    """Fill an ellipse with sub-pixel placement; at least the centre pixel is set."""
    cy, cx = centre
    height, width = mask.shape
    if not (0 <= cy < height and 0 <= cx < width):
        return
    centre_fixed = (round(cx * 16), round(cy * 16))
    axes_fixed = (max(1, round(axes[0] * 16)), max(1, round(axes[1] * 16)))
    cv2.ellipse(mask, centre_fixed, axes_fixed, angle_deg, 0, 360, 1, -1, cv2.LINE_8, shift=4)
    mask[int(cy), int(cx)] = 1


def _draw_lesions(
    rng: np.random.Generator,
    shape: tuple[int, int],
    anatomy: _Anatomy,
    density: float,
    extras: bool,
    cws_probability: float,
) -> dict[Lesion, np.ndarray]:
    """The true lesion masks (bool), drawn before any colour is painted.

    The classes are drawn in a fixed order from one stream (the order is part of
    what a seed means: changing it changes every synthetic image).
    """
    masks = {lesion: np.zeros(shape, dtype=np.uint8) for lesion in Lesion}
    _draw_haemorrhages(rng, masks[Lesion.HE], anatomy, density)
    _draw_microaneurysms(rng, masks[Lesion.MA], anatomy, density)
    _draw_exudates(rng, masks[Lesion.EX], anatomy, density)
    if density > 0 and rng.random() < cws_probability:
        _draw_cotton_wool_spots(rng, masks[Lesion.CWS], anatomy)
    if extras and density > 0:
        _draw_irma(rng, masks[Lesion.IRMA], anatomy)
        _draw_neovessels(rng, masks[Lesion.NV], anatomy)

    result = {lesion: mask.astype(bool) for lesion, mask in masks.items()}
    # what a later, opaque lesion covers is not visible as the earlier one
    result[Lesion.MA] &= ~result[Lesion.HE]
    result[Lesion.MA] &= ~result[Lesion.EX]
    result[Lesion.HE] &= ~result[Lesion.EX]
    if not extras:
        del result[Lesion.IRMA], result[Lesion.NV]
    return result


def _draw_haemorrhages(
    rng: np.random.Generator, mask: np.ndarray, anatomy: _Anatomy, density: float
) -> None:
    unit = anatomy.lesion_unit(Lesion.HE)
    for centre in _scatter(rng, rng.poisson(5 * density), anatomy.macula, 0.4 * anatomy.radius):
        if rng.random() < 0.4:  # flame: elongated along the nerve fibres, radial from the disc
            angle = np.degrees(np.arctan2(centre[0] - anatomy.disc[0], centre[1] - anatomy.disc[1]))
            axes = (rng.uniform(14, 30) * unit, rng.uniform(3, 6) * unit)
            _ellipse(mask, centre, axes, angle + rng.normal(0, 10))
        else:  # dot-blot: a few overlapping round blobs
            for part in _scatter(rng, int(rng.integers(1, 4)), centre, 4 * unit):
                axes = (rng.uniform(5, 14) * unit, rng.uniform(5, 14) * unit)
                _ellipse(mask, part, axes, rng.uniform(0, 180))


def _draw_microaneurysms(
    rng: np.random.Generator, mask: np.ndarray, anatomy: _Anatomy, density: float
) -> None:
    for centre in _scatter(rng, rng.poisson(18 * density), anatomy.macula, 0.35 * anatomy.radius):
        radius = rng.uniform(1.0, 3.0) * anatomy.lesion_unit(Lesion.MA)
        _ellipse(mask, centre, (radius, radius), 0)


def _draw_exudates(
    rng: np.random.Generator, mask: np.ndarray, anatomy: _Anatomy, density: float
) -> None:
    """Clusters of small bright specks around the macula."""
    unit = anatomy.lesion_unit(Lesion.EX)
    for _ in range(rng.poisson(2.5 * density)):
        angle, distance = rng.uniform(0, 2 * np.pi), rng.uniform(0.08, 0.45) * anatomy.radius
        cluster = (
            anatomy.macula[0] + distance * np.sin(angle),
            anatomy.macula[1] + distance * np.cos(angle),
        )
        spread = rng.uniform(8, 30) * unit
        for centre in _scatter(rng, int(rng.integers(3, 25)), cluster, spread):
            axes = (rng.uniform(1.5, 6) * unit, rng.uniform(1.5, 6) * unit)
            _ellipse(mask, centre, axes, rng.uniform(0, 180))


def _draw_cotton_wool_spots(rng: np.random.Generator, mask: np.ndarray, anatomy: _Anatomy) -> None:
    """One to three patches of a few blobs each, 0.2 to 0.55 radii away from the disc."""
    unit = anatomy.lesion_unit(Lesion.CWS)
    for _ in range(int(rng.integers(1, 4))):
        angle, distance = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.55) * anatomy.radius
        centre = (
            anatomy.disc[0] + distance * np.sin(angle),
            anatomy.disc[1] + distance * np.cos(angle),
        )
        for part in _scatter(rng, int(rng.integers(3, 7)), centre, 8 * unit):
            axes = (rng.uniform(8, 20) * unit, rng.uniform(6, 14) * unit)
            _ellipse(mask, part, axes, rng.uniform(0, 180))


def _random_walk(
    rng: np.random.Generator, start: np.ndarray, steps: int, step: float, wiggle: float
) -> np.ndarray:
    """A tortuous polyline as int32 (x, y) points in 1/16 pixel (for ``cv2`` with shift=4)."""
    angles = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, wiggle, steps))
    offsets = np.cumsum(np.stack([np.cos(angles), np.sin(angles)], axis=1) * step, axis=0)
    points = start[::-1] + offsets
    return np.round(points * 16).astype(np.int32)


def _draw_irma(rng: np.random.Generator, mask: np.ndarray, anatomy: _Anatomy) -> None:
    if rng.random() < 0.6:
        return
    unit = anatomy.lesion_unit(Lesion.IRMA)
    for centre in _scatter(rng, int(rng.integers(1, 3)), anatomy.macula, 0.3 * anatomy.radius):
        line = _random_walk(rng, centre, 14, 5 * unit, 0.8)
        cv2.polylines(mask, [line], False, 1, max(1, round(3 * unit)), cv2.LINE_8, shift=4)


def _draw_neovessels(rng: np.random.Generator, mask: np.ndarray, anatomy: _Anatomy) -> None:
    if rng.random() < 0.7:
        return
    unit = anatomy.lesion_unit(Lesion.NV)
    for centre in _scatter(rng, int(rng.integers(2, 5)), anatomy.disc, 1.5 * anatomy.disc_radius):
        loop = _random_walk(rng, centre, 20, 3 * unit, 0.6)
        cv2.polylines(mask, [loop], True, 1, max(1, round(2 * unit)), cv2.LINE_8, shift=4)


def _blend(image: np.ndarray, alpha: np.ndarray, colour: RGB) -> None:
    """In place: ``image`` towards ``colour`` by the per-pixel opacity ``alpha``."""
    x, y, w, h = cv2.boundingRect((alpha > 0).astype(np.uint8))
    window = np.s_[y : y + h, x : x + w]
    region = image[window]
    region += (np.asarray(colour, dtype=np.float32) - region) * alpha[window][..., None]


def _soft(mask: np.ndarray, sigma: float, gain: float) -> np.ndarray:
    """Opacity from a mask: blurred edges, saturated core."""
    blurred = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    return np.clip(blurred * gain, 0.0, 1.0)


def _paint_lesions(image: np.ndarray, lesions: dict[Lesion, np.ndarray], unit: float) -> None:
    looks = {  # lesion: (colour, opacity, edge blur sigma in px, core gain)
        Lesion.IRMA: (VESSEL_COLOUR, 0.8, 0.4 + 0.3 * unit, 2.0),
        Lesion.NV: (VESSEL_COLOUR, 0.7, 0.4 + 0.3 * unit, 2.0),
        Lesion.HE: (HE_COLOUR, 0.95, 0.5 + 0.8 * unit, 1.6),
        Lesion.MA: (MA_COLOUR, 0.95, 0.4 + 0.3 * unit, 2.2),
        Lesion.EX: (EX_COLOUR, 0.92, 0.4 + 0.4 * unit, 1.8),
        Lesion.CWS: (CWS_COLOUR, 0.75, 0.5 + 4.0 * unit, 1.3),
    }
    for lesion, (colour, opacity, sigma, gain) in looks.items():
        mask = lesions.get(lesion)
        if mask is not None and mask.any():
            _blend(image, _soft(mask, sigma, gain) * opacity, colour)


def _decorate(
    rng: np.random.Generator, image: np.ndarray, fov: np.ndarray, anatomy: _Anatomy
) -> np.ndarray:
    """Camera quirks on some images: a notch cut into the rim, a bright label in a corner.

    Returns the field of view less the notch.
    """
    height, width = fov.shape
    if rng.random() < 0.3:
        angle = rng.uniform(0, 2 * np.pi)
        cy, cx = anatomy.centre
        tip = 0.9 * anatomy.radius
        outer, half = 1.05 * anatomy.radius, 0.06
        points = [
            (cx + tip * np.cos(angle), cy + tip * np.sin(angle)),
            (cx + outer * np.cos(angle - half), cy + outer * np.sin(angle - half)),
            (cx + outer * np.cos(angle + half), cy + outer * np.sin(angle + half)),
        ]
        notch = np.zeros(fov.shape, dtype=np.uint8)
        cv2.fillPoly(notch, [np.round(np.array(points) * 16).astype(np.int32)], 1, shift=4)
        fov = fov & (notch == 0)
        image *= fov[..., None]
    if rng.random() < 0.3:
        text = f"{int(rng.integers(1, 99)):02d}/{int(rng.integers(1, 13)):02d}"
        scale = 0.0012 * height
        thickness = max(1, round(2 * scale))
        label = np.zeros(fov.shape, dtype=np.uint8)
        origin = (round(0.015 * width), height - round(0.02 * height))
        cv2.putText(label, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, 255, thickness)
        label[fov] = 0
        _blend(image, label.astype(np.float32) / 255.0, (235.0, 235.0, 235.0))
    return fov
