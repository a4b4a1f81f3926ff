"""Appearance: textures, light, shadows, fog, glows and sensor noise over the painted canvases.

Speed: every per-pixel step is one vectorized numpy or cv2 call on the whole image. Textures and
noise are generated once per image size (a bank twice the image size) and each image reads a
random window of them, so no image pays for random-number generation per pixel.
"""

from __future__ import annotations

import functools

import numpy as np

from edgeseg.data.synthetic.domains import DomainStyle
from edgeseg.data.synthetic.scene import ASPHALT, BRICK, FABRIC, FOLIAGE, SMOOTH, TILES, Canvas

BANK_SEED = 20240607  # the texture bank is fixed; images differ by the window they read


@functools.lru_cache(maxsize=4)
def texture_bank(cv2, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Textures (materials x 2H x 2W, relative brightness), planar noise (3 x 2H x 2W, unit
    gaussian) and the flat index grid used to read an H x W window of the textures."""
    rng = np.random.default_rng(BANK_SEED)
    h, w = 2 * height, 2 * width
    scale = max(height / 256.0, 0.25)  # texture features keep their size relative to the image

    def smooth_noise(sigma: float) -> np.ndarray:
        n = rng.standard_normal((h, w)).astype(np.float32)
        n = cv2.GaussianBlur(n, (0, 0), max(sigma * scale, 0.3))
        return n / (n.std() + 1e-6)

    rows = np.arange(h, dtype=np.float32)[:, None]
    cols = np.arange(w, dtype=np.float32)[None, :]
    period = max(round(6 * scale), 3)
    grid = ((rows % period < 1) | (cols % (2 * period) < 1)).astype(np.float32)
    bricks = ((rows % period < 1) | ((cols + (rows // period % 2) * period) % (2 * period) < 1)).astype(np.float32)
    bank = np.zeros((6, h, w), np.float32)
    bank[SMOOTH] = 0.03 * smooth_noise(4)
    bank[ASPHALT] = 0.12 * smooth_noise(0.7) + 0.06 * smooth_noise(6)
    bank[TILES] = -0.25 * grid + 0.06 * smooth_noise(1)
    bank[BRICK] = -0.3 * bricks + 0.08 * smooth_noise(1) + 0.05 * smooth_noise(8)
    bank[FOLIAGE] = 0.35 * np.tanh(1.5 * (smooth_noise(1.2) + 0.6 * smooth_noise(4)))
    bank[FABRIC] = 0.1 * smooth_noise(0.8) + 0.12 * smooth_noise(3)
    bank += 1.0  # stored as the brightness factor itself
    noise = rng.standard_normal((3, h, w)).astype(np.float32)
    window = (np.arange(height)[:, None] * w + np.arange(width)[None, :]).astype(np.int64)
    return bank.ravel(), noise, window


def render(cv2, rng: np.random.Generator, canvas: Canvas, style: DomainStyle) -> np.ndarray:
    """The final RGB uint8 image of a painted scene in the style of one domain.

    Per-pixel light is one H x W map (global level, gradient, shadows, texture, emissive
    surfaces); colour work then runs channel by channel on contiguous planes (numpy is several
    times faster on those than on H x W x 3 arrays with a broadcast last axis).
    """
    height, width = canvas.label.shape
    bank, noise, window = texture_bank(cv2, height, width)
    offset = int(rng.integers(0, height)) * 2 * width + int(rng.integers(0, width))
    texture = np.take(bank, canvas.material.astype(np.int64) * (4 * height * width) + (window + offset))

    light = _light_field(rng, height, width, style)
    light *= texture
    if style.shadows:
        light *= canvas.shade.astype(np.float32) * np.float32(1.0 / 255.0)
    if canvas.emissive.any():
        np.copyto(light, np.float32(1.1), where=canvas.emissive > 0)  # lights ignore darkness
    glow = _glow(cv2, canvas.emissive, rng) if style.lamps else None
    visibility = rng.uniform(*style.visibility_m)
    tint = _tint(rng, style)
    fog_colour = np.float32(rng.uniform(*style.fog_level)) * tint**0.3
    clear = np.exp(canvas.depth * np.float32(-1.0 / visibility)) if visibility < 1e5 else None
    sigma = np.float32(rng.uniform(*style.noise_sigma))
    ny, nx = int(rng.integers(0, height)), int(rng.integers(0, width))

    planes = []
    for c in range(3):
        plane = np.multiply(canvas.albedo[..., c], light * tint[c], dtype=np.float32)
        if glow is not None:
            plane += glow * np.float32(GLOW_COLOUR[c])
        if clear is not None:  # fog: blend towards the fog colour with distance
            plane -= fog_colour[c]
            plane *= clear
            plane += fog_colour[c]
        plane += noise[c, ny : ny + height, nx : nx + width] * sigma
        np.clip(plane, 0, 255, out=plane)
        planes.append(plane.astype(np.uint8))
    out = cv2.merge(planes)
    return cv2.GaussianBlur(out, (3, 3), 0.6)  # lens softness: no perfectly sharp class edges


GLOW_COLOUR = (255.0, 200.0, 120.0)


def _light_field(rng, height: int, width: int, style: DomainStyle) -> np.ndarray:
    """Global light level with a random linear gradient (sun direction, vignetting-like falloff)."""
    level = np.float32(rng.uniform(*style.light))
    gy, gx = rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35)
    rows = np.linspace(-0.5, 0.5, height, dtype=np.float32) * np.float32(gy) + np.float32(1.0)
    cols = np.linspace(-0.5, 0.5, width, dtype=np.float32) * np.float32(gx)
    return (rows[:, None] + cols[None, :]) * level


def _tint(rng, style: DomainStyle) -> np.ndarray:
    """Per-channel light colour: warm (orange) for positive bias, cool (blue) for negative."""
    warmth = style.warm_bias + rng.uniform(-1, 1) * style.tint_strength
    return np.array([1 + 0.25 * warmth, 1.0, 1 - 0.25 * warmth], np.float32)


def _glow(cv2, emissive: np.ndarray, rng) -> np.ndarray:
    """Light bleeding around lamps, headlights and lit windows (computed at 1/8 resolution)."""
    height, width = emissive.shape
    small = cv2.resize(emissive.astype(np.float32), (max(width // 8, 1), max(height // 8, 1)), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 2.0) * np.float32(rng.uniform(0.8, 1.6))
    glow = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.minimum(glow, np.float32(1.0))
