"""Street-scene geometry: a pinhole camera over a ground plane, painted back to front.

Everything is placed in metres (X right, Y up, z forward) and projected through one camera, so
the road converges to a vanishing point, far objects are small and near ones hide what is behind
them (painter's order). The painter writes five aligned canvases per polygon: label, albedo
colour, material (which texture), depth (for fog) and emissive (lights that ignore darkness).
Appearance (light, fog, noise) is applied later by :mod:`render`.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np

from edgeseg.data.synthetic.domains import (
    BUILDING, PERSON, POLE, ROAD, SIDEWALK, SIGN, SKY, VEGETATION, VEHICLE, DomainStyle,
)

CAMERA_HEIGHT_M = 1.5
FAR_Z_M = 400.0
SUBPIXEL_BITS = 3  # cv2 fill with 1/8-pixel vertex precision

# Materials index the texture bank in render.py.
SMOOTH, ASPHALT, TILES, BRICK, FOLIAGE, FABRIC = range(6)


@dataclass
class Canvas:
    label: np.ndarray  # H x W uint8 fine class ids
    albedo: np.ndarray  # H x W x 3 uint8 surface colour
    material: np.ndarray  # H x W uint8 texture id
    depth: np.ndarray  # H x W float32 metres
    emissive: np.ndarray  # H x W uint8, 1 where the surface emits light
    shade: np.ndarray  # H x W uint8, 255 = fully lit, lower = in shadow


class Painter:
    """Projects metre-space polygons and fills them into the canvases."""

    def __init__(self, cv2, height: int, width: int, horizon: float, vanish_x: float, focal: float, needs_depth: bool = True):
        self.cv2, self.h, self.w, self.needs_depth = cv2, height, width, needs_depth
        self.horizon, self.vanish_x, self.focal = horizon, vanish_x, focal
        rows = np.arange(height, dtype=np.float32) + 0.5 - horizon
        ground_depth = np.where(rows > 0, focal * CAMERA_HEIGHT_M / np.maximum(rows, 1e-3), FAR_Z_M)
        self.canvas = Canvas(
            label=np.full((height, width), SKY, np.uint8),
            albedo=np.zeros((height, width, 3), np.uint8),
            material=np.zeros((height, width), np.uint8),
            depth=np.repeat(np.minimum(ground_depth, FAR_Z_M)[:, None], width, axis=1).astype(np.float32),
            emissive=np.zeros((height, width), np.uint8),
            shade=np.full((height, width), 255, np.uint8),
        )
        self.any_emissive = False

    def project(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Metre points (x right, y up, z forward) -> int32 fixed-point pixel vertices."""
        scale = (self.focal * (1 << SUBPIXEL_BITS)) / np.maximum(z, 0.5)
        out = np.empty((*np.shape(x), 2), np.int32)
        out[..., 0] = self.vanish_x * (1 << SUBPIXEL_BITS) + x * scale
        out[..., 1] = self.horizon * (1 << SUBPIXEL_BITS) + (CAMERA_HEIGHT_M - y) * scale
        return out

    def fill(self, polys: list[np.ndarray], label: int, colour, material: int, depth: float | None, emissive: bool = False) -> None:
        """Fill polygons of one class; ``depth=None`` keeps the ground plane's per-row depth."""
        cv2, c, s = self.cv2, self.canvas, SUBPIXEL_BITS
        cv2.fillPoly(c.label, polys, int(label), shift=s)
        cv2.fillPoly(c.albedo, polys, tuple(int(v) for v in colour), shift=s)
        cv2.fillPoly(c.material, polys, int(material), shift=s)
        if depth is not None and self.needs_depth:  # depth only feeds fog
            cv2.fillPoly(c.depth, polys, float(depth), shift=s)
        if emissive or self.any_emissive:
            self.any_emissive = True
            cv2.fillPoly(c.emissive, polys, int(emissive), shift=s)

    def recolour(self, polys: list[np.ndarray], colour, material: int | None = None, emissive: bool = False) -> None:
        """Paint a detail (window, wheel, face) without changing the label underneath."""
        cv2, c, s = self.cv2, self.canvas, SUBPIXEL_BITS
        cv2.fillPoly(c.albedo, polys, tuple(int(v) for v in colour), shift=s)
        if material is not None:
            cv2.fillPoly(c.material, polys, int(material), shift=s)
        if emissive or self.any_emissive:  # once something glows, later paint may cover it
            self.any_emissive = True
            cv2.fillPoly(c.emissive, polys, int(emissive), shift=s)

    def shadow(self, polys: list[np.ndarray], level: int) -> None:
        self.cv2.fillPoly(self.canvas.shade, polys, int(level), shift=SUBPIXEL_BITS)

    # --- primitives in metre space -----------------------------------------------------------
    def ground_quad(self, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
        return self.project(np.array([x0, x1, x1, x0]), np.zeros(4), np.array([z0, z0, z1, z1]))

    def upright_rect(self, x0: float, x1: float, y0: float, y1: float, z: float) -> np.ndarray:
        """A rectangle facing the camera at depth z."""
        return self.project(np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]), np.full(4, z))

    def side_rect(self, x: float, z0: float, z1: float, y0: float, y1: float) -> np.ndarray:
        """A rectangle parallel to the road (a facade, a parked car's flank) at lateral x."""
        return self.project(np.full(4, x), np.array([y0, y0, y1, y1]), np.array([z0, z1, z1, z0]))

    def blob(self, rng: np.random.Generator, cx: float, cy: float, radius: float, z: float, points: int = 12) -> np.ndarray:
        """A jittered round polygon (tree crowns, heads)."""
        angles = np.linspace(0, 2 * np.pi, points, endpoint=False) + rng.uniform(0, 1)
        radii = radius * rng.uniform(0.75, 1.15, points)
        return self.project(cx + radii * np.cos(angles), cy + radii * np.sin(angles), np.full(points, z))


def random_colour(rng: np.random.Generator, hue=(0.0, 1.0), sat=(0.0, 1.0), val=(0.1, 1.0)) -> tuple[int, int, int]:
    h = rng.uniform(*hue) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(*sat), rng.uniform(*val))
    return int(r * 255), int(g * 255), int(b * 255)


def paint_scene(cv2, rng: np.random.Generator, height: int, width: int, style: DomainStyle) -> Canvas:
    """Draw one random street into the canvases (labels in the fine label space)."""
    horizon = height * rng.uniform(0.36, 0.5)
    focal = height * rng.uniform(0.8, 1.0)
    needs_depth = style.visibility_m[0] < 1e5
    painter = Painter(cv2, height, width, horizon, width * rng.uniform(0.35, 0.65), focal, needs_depth)
    _paint_sky(painter, rng, style)
    road_w = rng.uniform(6.0, 12.0)
    road_x0 = -road_w / 2 + rng.uniform(-2.5, 2.5)
    road_x1 = road_x0 + road_w
    walk_w = rng.uniform(1.8, 4.5)
    _paint_ground(painter, rng, road_x0, road_x1, walk_w)
    for side_x, direction in ((road_x0 - walk_w, -1.0), (road_x1 + walk_w, 1.0)):
        _paint_facades(painter, rng, side_x, direction, style)
    objects = _street_objects(rng, road_x0, road_x1, walk_w)
    for z, draw, args in sorted(objects, key=lambda item: -item[0]):  # far first: near ones occlude
        draw(painter, rng, style, *args)
    return painter.canvas


SKY_GRADIENTS = {  # (top colour range, horizon colour range) as HSV boxes
    "day": (((0.55, 0.62), (0.3, 0.8), (0.55, 0.95)), ((0.5, 0.6), (0.0, 0.3), (0.75, 1.0))),
    "night": (((0.6, 0.7), (0.3, 0.9), (0.0, 0.08)), ((0.05, 0.7), (0.2, 0.6), (0.05, 0.2))),
    "fog": (((0.5, 0.65), (0.0, 0.15), (0.7, 0.9)), ((0.5, 0.65), (0.0, 0.1), (0.8, 0.95))),
    "dusk": (((0.65, 0.85), (0.3, 0.7), (0.2, 0.55)), ((0.0, 0.12), (0.4, 0.9), (0.7, 1.0))),
}


def _paint_sky(p: Painter, rng, style: DomainStyle) -> None:
    """A vertical gradient, sometimes overcast grey: sky colours overlap buildings and roads."""
    top_box, low_box = SKY_GRADIENTS[style.sky]
    top, low = np.array(random_colour(rng, *top_box), np.float32), np.array(random_colour(rng, *low_box), np.float32)
    if style.sky == "day" and rng.random() < 0.3:  # overcast
        grey = rng.uniform(120, 230)
        top, low = np.full(3, grey * 0.85, np.float32), np.full(3, grey, np.float32)
    t = np.clip(np.arange(p.h, dtype=np.float32) / max(p.horizon, 1.0), 0, 1)[:, None]
    column = (top * (1 - t) + low * t).astype(np.uint8)[:, None, :]
    p.canvas.albedo = p.cv2.resize(column, (p.w, p.h), interpolation=p.cv2.INTER_NEAREST)


def _paint_ground(p: Painter, rng, x0: float, x1: float, walk_w: float) -> None:
    p.fill([p.ground_quad(-500, 500, 1.0, FAR_Z_M)], VEGETATION, random_colour(rng, (0.1, 0.35), (0.3, 0.7), (0.25, 0.6)), FOLIAGE, None)
    grey = rng.uniform(0.2, 0.5)
    tint = rng.uniform(-0.04, 0.04, 3)
    road = tuple(int(255 * np.clip(grey + t, 0, 1)) for t in tint)
    p.fill([p.ground_quad(x0, x1, 1.0, FAR_Z_M)], ROAD, road, ASPHALT, None)
    walk = random_colour(rng, (0.0, 0.15), (0.0, 0.45), (0.35, 0.8))
    p.fill([p.ground_quad(x0 - walk_w, x0, 1.0, FAR_Z_M), p.ground_quad(x1, x1 + walk_w, 1.0, FAR_Z_M)], SIDEWALK, walk, TILES, None)
    curb = tuple(min(255, int(v * 1.3) + 20) for v in walk)
    p.recolour([p.ground_quad(x0 - 0.2, x0, 1.0, FAR_Z_M), p.ground_quad(x1, x1 + 0.2, 1.0, FAR_Z_M)], curb)
    paint = (235, 235, 225) if rng.random() < 0.7 else (230, 190, 40)
    centre = x0 + (x1 - x0) * rng.uniform(0.4, 0.6)
    period, start = rng.uniform(6, 12), rng.uniform(1, 6)
    dashes = [p.ground_quad(centre - 0.08, centre + 0.08, z, z + period * 0.4) for z in np.arange(start, 150, period)]
    p.recolour(dashes, paint, SMOOTH)


def _paint_facades(p: Painter, rng, side_x: float, direction: float, style: DomainStyle) -> None:
    z = rng.uniform(1.0, 8.0)
    while z < 180:
        length = rng.uniform(6, 22)
        if rng.random() < 0.2:  # a gap: grass and sky show through
            z += length * 0.5
            continue
        x = side_x + direction * rng.uniform(0.0, 3.0)
        height = rng.uniform(5, 28)
        colour = _building_colour(rng)
        p.fill([p.side_rect(x, z, z + length, 0, height)], BUILDING, colour, BRICK, z + length / 2)
        if z < 70:
            _paint_windows(p, rng, x, z, length, height, style)
        z += length
    # a skyline across the far end of the street
    for _ in range(rng.integers(2, 6)):
        cx, zf = rng.uniform(-60, 60), rng.uniform(150, 300)
        w, h = rng.uniform(8, 40), rng.uniform(10, 60)
        p.fill([p.upright_rect(cx - w / 2, cx + w / 2, 0, h, zf)], BUILDING, _building_colour(rng), BRICK, zf)


def _building_colour(rng) -> tuple[int, int, int]:
    kind = rng.integers(4)
    if kind == 0:  # concrete / plaster, any pale colour
        return random_colour(rng, (0, 1), (0.0, 0.35), (0.45, 0.95))
    if kind == 1:  # brick
        return random_colour(rng, (0.0, 0.08), (0.4, 0.75), (0.35, 0.7))
    if kind == 2:  # glass / painted: any hue
        return random_colour(rng, (0, 1), (0.2, 0.7), (0.2, 0.8))
    return random_colour(rng, (0.08, 0.4), (0.05, 0.5), (0.2, 0.6))  # greenish/olive like foliage


def _paint_windows(p: Painter, rng, x: float, z0: float, length: float, height: float, style: DomainStyle) -> None:
    """All windows of a facade in one projection and at most two fills (dark glass, lit)."""
    glass = random_colour(rng, (0.5, 0.7), (0.1, 0.5), (0.05, 0.35))
    spacing, win_w = rng.uniform(2.2, 4.0), rng.uniform(0.8, 1.6)
    floors = np.arange(1.2, height - 1.5, 3.0)
    columns = np.arange(z0 + 0.6, z0 + length - win_w, spacing)
    if len(floors) == 0 or len(columns) == 0:
        return
    fy, cz = (a.reshape(-1, 1) for a in np.meshgrid(floors, columns, indexing="ij"))
    ys = np.concatenate([fy, fy, fy + 1.5, fy + 1.5], axis=1)
    zs = np.concatenate([cz, cz + win_w, cz + win_w, cz], axis=1)
    quads = p.project(np.full(ys.shape, x), ys, zs)  # windows x 4 corners x 2
    lit = rng.random(len(quads)) < style.lit_windows
    if (~lit).any():
        p.recolour(list(quads[~lit]), glass, SMOOTH)
    if lit.any():
        p.recolour(list(quads[lit]), random_colour(rng, (0.1, 0.16), (0.3, 0.7), (0.85, 1.0)), SMOOTH, emissive=True)


def _street_objects(rng, x0: float, x1: float, walk_w: float) -> list:
    """(depth, draw function, args) for every object standing on the street."""
    objects = []
    # Depth ranges stop where an object would shrink to a few pixels at 128 x 256: such specks
    # teach nothing and make the small classes' IoU a lottery.
    for _ in range(rng.integers(2, 7)):
        z = rng.uniform(4, 45)
        lane_x = rng.uniform(x0 + 1.2, x1 - 1.2)
        objects.append((z, _draw_vehicle_rear, (lane_x, z)))
    for _ in range(rng.integers(0, 3)):  # parked cars seen from the side along the curb
        z = rng.uniform(4, 40)
        objects.append((z, _draw_vehicle_side, (rng.choice([x0 + 1.0, x1 - 1.0]), z)))
    for _ in range(rng.integers(1, 7)):
        z = rng.uniform(3, 25)
        if rng.random() < 0.8:
            side = rng.choice([-1, 1])
            x = (x0 - rng.uniform(0.3, walk_w - 0.3)) if side < 0 else (x1 + rng.uniform(0.3, walk_w - 0.3))
        else:  # crossing the road
            x = rng.uniform(x0, x1)
        objects.append((z, _draw_person, (x, z)))
    for _ in range(rng.integers(2, 6)):
        z = rng.uniform(3, 30)
        x = rng.choice([x0 - 0.4, x1 + 0.4])
        objects.append((z, _draw_pole, (x, z, rng.random() < 0.7)))
    for _ in range(rng.integers(2, 7)):
        z = rng.uniform(5, 60)
        x = rng.choice([x0 - walk_w - rng.uniform(0.5, 2.5), x1 + walk_w + rng.uniform(0.5, 2.5)])
        objects.append((z, _draw_tree, (x, z)))
    return objects


def _vehicle_colour(rng) -> tuple[int, int, int]:
    if rng.random() < 0.4:  # white, silver, grey, black
        v = rng.uniform(0.05, 0.95)
        return int(v * 255), int(v * 255), int(min(1, v * 1.05) * 255)
    return random_colour(rng, (0, 1), (0.3, 0.95), (0.2, 0.95))


def _draw_vehicle_rear(p: Painter, rng, style: DomainStyle, x: float, z: float) -> None:
    big = rng.random() < 0.2
    w = rng.uniform(2.3, 2.6) if big else rng.uniform(1.6, 1.9)
    h = rng.uniform(2.6, 3.4) if big else rng.uniform(1.3, 1.6)
    body = _vehicle_colour(rng)
    if style.shadows:
        p.shadow([p.ground_quad(x - w / 2 - 0.1, x + w / 2 + 0.3, z, z + rng.uniform(3, 6))], rng.integers(70, 140))
    lower = p.upright_rect(x - w / 2, x + w / 2, 0.25, h * 0.55, z)
    cabin_w = w * (0.95 if big else 0.8)
    cabin = p.project(
        np.array([x - w / 2 + 0.05, x + w / 2 - 0.05, x + cabin_w / 2, x - cabin_w / 2]),
        np.array([h * 0.55, h * 0.55, h, h]), np.full(4, z),
    )
    wheels = [p.upright_rect(x - w / 2 + 0.05, x - w / 2 + 0.35, 0, 0.35, z), p.upright_rect(x + w / 2 - 0.35, x + w / 2 - 0.05, 0, 0.35, z)]
    p.fill([lower, cabin, *wheels], VEHICLE, body, SMOOTH, z)
    p.recolour(wheels, (20, 20, 22))
    p.recolour([p.upright_rect(x - cabin_w / 2 + 0.15, x + cabin_w / 2 - 0.15, h * 0.6, h * 0.92, z)], random_colour(rng, (0.5, 0.7), (0, 0.3), (0.05, 0.3)))
    lamp_y = h * 0.4
    lamps = [p.upright_rect(x - w / 2 + 0.1, x - w / 2 + 0.4, lamp_y, lamp_y + 0.15, z), p.upright_rect(x + w / 2 - 0.4, x + w / 2 - 0.1, lamp_y, lamp_y + 0.15, z)]
    p.recolour(lamps, (230, 30, 25), emissive=style.lamps)


def _draw_vehicle_side(p: Painter, rng, style: DomainStyle, x: float, z: float) -> None:
    length, h = rng.uniform(3.8, 4.8), rng.uniform(1.3, 1.6)
    body = _vehicle_colour(rng)
    lower = p.side_rect(x, z, z + length, 0.25, h * 0.55)
    cabin = p.project(np.full(4, x), np.array([h * 0.55, h * 0.55, h, h]), np.array([z + 0.1 * length, z + length, z + 0.75 * length, z + 0.3 * length]))
    wheels = [p.side_rect(x, z + 0.5, z + 1.1, 0, 0.5), p.side_rect(x, z + length - 1.1, z + length - 0.5, 0, 0.5)]
    p.fill([lower, cabin, *wheels], VEHICLE, body, SMOOTH, z + length / 2)
    p.recolour(wheels, (25, 25, 25))
    p.recolour([p.side_rect(x, z + 0.35 * length, z + 0.7 * length, h * 0.6, h * 0.92)], random_colour(rng, (0.5, 0.7), (0, 0.3), (0.05, 0.3)))


def _draw_person(p: Painter, rng, style: DomainStyle, x: float, z: float) -> None:
    h = rng.uniform(1.5, 1.9)
    shirt, trousers = _vehicle_colour(rng), random_colour(rng, (0, 1), (0, 0.7), (0.05, 0.7))
    skin = random_colour(rng, (0.03, 0.09), (0.3, 0.65), (0.3, 0.95))
    stride = rng.uniform(0.0, 0.25)
    legs = [
        p.project(np.array([x - 0.2 - stride, x - 0.05 - stride, x - 0.02, x - 0.2]), np.array([0, 0, h * 0.47, h * 0.47]), np.full(4, z)),
        p.project(np.array([x + 0.05 + stride, x + 0.2 + stride, x + 0.2, x + 0.02]), np.array([0, 0, h * 0.47, h * 0.47]), np.full(4, z)),
    ]
    torso = p.upright_rect(x - 0.24, x + 0.24, h * 0.45, h * 0.83, z)
    head = p.blob(rng, x, h * 0.91, 0.11, z, points=8)
    p.fill([*legs, torso, head], PERSON, shirt, FABRIC, z)
    p.recolour(legs, trousers)
    p.recolour([head], skin, SMOOTH)


def _draw_pole(p: Painter, rng, style: DomainStyle, x: float, z: float, with_sign: bool) -> None:
    h, w = rng.uniform(3.5, 7.0), rng.uniform(0.3, 0.5)
    colour = random_colour(rng, (0, 1), (0, 0.3), (0.15, 0.75))
    p.fill([p.upright_rect(x - w / 2, x + w / 2, 0, h, z)], POLE, colour, SMOOTH, z)
    if style.lamps and rng.random() < 0.6:
        p.recolour([p.upright_rect(x - w, x + w, h - 0.25, h, z)], (255, 220, 150), emissive=True)
    if with_sign:
        size, cy = rng.uniform(0.8, 1.3), rng.uniform(2.0, min(h, 3.2))
        shape = rng.integers(3)
        if shape == 0:
            plate = p.upright_rect(x - size / 2, x + size / 2, cy - size / 2, cy + size / 2, z)
        elif shape == 1:
            plate = p.blob(rng, x, cy, size / 2, z, points=10)
        else:
            plate = p.project(np.array([x - size / 2, x + size / 2, x]), np.array([cy + size / 2, cy + size / 2, cy - size / 2]), np.full(3, z))
        palette = ((200, 30, 30), (30, 70, 190), (235, 200, 30), (240, 240, 240), (30, 140, 60))
        p.fill([plate], SIGN, palette[rng.integers(len(palette))], SMOOTH, z - 0.01)


def _draw_tree(p: Painter, rng, style: DomainStyle, x: float, z: float) -> None:
    trunk_h, r = rng.uniform(1.5, 3.5), rng.uniform(1.2, 3.0)
    autumn = rng.random() < 0.3
    leaves = random_colour(rng, (0.02, 0.14) if autumn else (0.18, 0.4), (0.4, 0.9), (0.15, 0.7))
    bark = random_colour(rng, (0.05, 0.1), (0.3, 0.6), (0.15, 0.4))
    p.fill([p.upright_rect(x - 0.15, x + 0.15, 0, trunk_h + r * 0.3, z)], VEGETATION, bark, FABRIC, z)
    p.fill([p.blob(rng, x, trunk_h + r * 0.8, r, z, points=14)], VEGETATION, leaves, FOLIAGE, z)
