"""Embedded synthetic benchmark data: street scenes, aerial tiles, videos and scene classes.

Nothing here is downloaded. Every generator is vectorised numpy, seeded with
`np.random.default_rng`, and draws item i from its own stream (seed, generator, i), so the first k
items of a call with n > k equal a call with n = k. Class regions carry class-specific colour
distributions and textures (oriented stripes, band-limited noise, and the surface photographs that
scikit-image ships: brick, grass, gravel, moon; see `textures`), so even random-weight ViT features
separate the classes. Labels are exact: every pixel's label is the region that painted it.

- `semantic_scenes`: street-like scenes (sky on top, road at the bottom in perspective, buildings
  and vegetation between, cars, persons and poles); 8 classes plus 255 (an ego-vehicle hood).
- `aerial_tiles`: terrain with rotated objects of 13 fine-grained classes in 5 supercategories,
  their rotated boxes (4 corners, FAIR1M sense) and fine/super/instance masks.
- `videos`: objects that move smoothly, scale, change appearance slightly, enter and leave, over a
  panning textured background; per-frame boxes, track ids, categories (and instance masks).
- `scene_classification`: image-level land-use classes (UC Merced-like) with detail at several
  scales, so downscaling them simulates a coarser ground-sample distance.

Examples:
    >>> scenes = semantic_scenes(4, size=(224, 224), seed=0)
    >>> scenes.images.shape, scenes.labels.shape, scenes.class_names[0]
    ((4, 224, 224, 3), (4, 224, 224), 'road')
    >>> aerial = aerial_tiles(2, seed=0); aerial.boxes[0][0].points.shape
    (4, 2)
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np
from absl import logging

from vitjax import errors
from vitjax.data import textures

IGNORE_LABEL = 255

# Stream tags: item i of generator g with seed s uses default_rng([s, g, i]).
_SCENES, _AERIAL, _VIDEOS, _SCENE_CLS = 1, 2, 3, 4


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------


def _item_rng(seed: int, stream: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, index])


def _check_args(n: int, size, seed: int, what: str, min_side: int = 16) -> tuple[int, int]:
    if not isinstance(n, int | np.integer) or n < 0:
        raise errors.ConfigError(f"{what}: n={n!r}: expected a non-negative int")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise errors.ConfigError(f"{what}: seed={seed!r}: expected a non-negative int")
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise errors.ConfigError(f"{what}: size={size!r}: expected (height, width)") from None
    if h < min_side or w < min_side:
        raise errors.ConfigError(f"{what}: size={size!r}: expected sides >= {min_side}")
    return h, w


class _Progress:
    """Logs items/s and ETA every `every_s` seconds of a long generation loop."""

    def __init__(self, total: int, what: str, every_s: float = 10.0):
        self.total, self.what, self.every_s = total, what, every_s
        self.start = self.last = time.monotonic()
        self.done = 0

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every_s and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            logging.info(
                "%s: %d/%d (%.1f items/s, ETA %.0f s)",
                self.what,
                self.done,
                self.total,
                rate,
                (self.total - self.done) / rate,
            )


def _jitter(rng: np.random.Generator, colour, amount: float) -> np.ndarray:
    return np.clip(np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3), 0, 255).astype(
        np.float32
    )


def _pick(rng: np.random.Generator, palette) -> np.ndarray:
    return np.asarray(palette[int(rng.integers(len(palette)))], np.float32)


def _finish(colour: np.ndarray, tex: np.ndarray, rng: np.random.Generator, noise: float = 2.0):
    """Colour * (1 + texture) under smooth illumination, plus sensor noise -> uint8."""
    h, w = tex.shape
    light = 1.0 + 0.08 * textures.value_noise((h, w), rng, cell=max(h, w) / 2)
    img = colour * ((1.0 + tex) * light)[..., None]
    img += rng.normal(0.0, noise, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _window(h: int, w: int, y0: float, y1: float, x0: float, x1: float):
    """Integer pixel window covering [y0, y1) x [x0, x1) clipped to the image, with the pixel-centre
    coordinates of its rows [wh, 1] and columns [1, ww]; None when empty."""
    r0, r1 = max(0, int(np.floor(y0))), min(h, int(np.ceil(y1)))
    c0, c1 = max(0, int(np.floor(x0))), min(w, int(np.ceil(x1)))
    if r0 >= r1 or c0 >= c1:
        return None
    ys = (np.arange(r0, r1, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(c0, c1, dtype=np.float32) + 0.5)[None, :]
    return (slice(r0, r1), slice(c0, c1)), ys, xs


def _superellipse(u, v, cu, cv, ru, rv, power=2.0):
    return (np.abs(u - cu) / ru) ** power + (np.abs(v - cv) / rv) ** power <= 1.0


class _Canvas:
    """Label, colour and texture planes painted region by region (later paint wins)."""

    def __init__(self, h: int, w: int, label_dtype=np.uint8):
        self.h, self.w = h, w
        self.label = np.zeros((h, w), label_dtype)
        self.colour = np.zeros((h, w, 3), np.float32)
        self.tex = np.zeros((h, w), np.float32)

    def paint(self, win, mask, label, colour, tex) -> None:
        """Paint `mask` (window-shaped bool) of window `win` with a label, colour ([3] or
        [wh, ww, 3]) and texture (scalar or [wh, ww])."""
        lab, col, tx = self.label[win], self.colour[win], self.tex[win]
        mask = np.broadcast_to(mask, lab.shape)
        lab[mask] = label
        colour = np.asarray(colour, np.float32)
        col[mask] = colour if colour.ndim == 1 else np.broadcast_to(colour, col.shape)[mask]
        tex = np.asarray(tex, np.float32)
        tx[mask] = tex if tex.ndim == 0 else np.broadcast_to(tex, tx.shape)[mask]


# ---------------------------------------------------------------------------------------------
# Semantic street scenes
# ---------------------------------------------------------------------------------------------

SCENE_CLASSES = ("road", "sidewalk", "building", "vegetation", "sky", "car", "person", "pole")
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, CAR, PERSON, POLE = range(len(SCENE_CLASSES))
THING_CLASSES = (CAR, PERSON, POLE)


@dataclasses.dataclass(frozen=True)
class SemanticScenes:
    """Street-like scenes with dense labels.

    Attributes:
      images: uint8 [n, H, W, 3].
      labels: uint8 [n, H, W], class ids into class_names, 255 = ignore (ego-vehicle hood).
      class_names: the class names, index = class id.
      ignore_label: 255.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    ignore_label: int = IGNORE_LABEL


_BUILDING_COLOURS = (
    (205, 185, 150),
    (145, 105, 80),
    (150, 150, 158),
    (165, 85, 65),
    (220, 215, 200),
)
_CAR_COLOURS = (
    (180, 30, 30),
    (30, 60, 160),
    (225, 225, 225),
    (30, 30, 32),
    (150, 150, 155),
    (205, 160, 40),
    (40, 115, 60),
    (115, 30, 90),
)
_CLOTHES = (
    (40, 40, 60),
    (150, 30, 30),
    (30, 90, 150),
    (200, 190, 170),
    (60, 100, 50),
    (90, 60, 40),
)
_SKIN = ((230, 190, 160), (190, 140, 100), (120, 80, 55))


def _scene_textures(rng: np.random.Generator, h: int, w: int) -> dict[int, np.ndarray]:
    def real(name, scale=1):
        return textures.random_crop(textures.real_texture(name, scale), (h, w), rng)

    return {
        ROAD: 0.18 * real("gravel", 0.5) + 0.06 * textures.value_noise((h, w), rng, h / 4),
        SIDEWALK: 0.16 * real("brick", 1) + 0.05 * textures.band_noise((h, w), rng, 0.2, 0.5),
        BUILDING: 0.10 * real("brick", 2) + 0.04 * textures.value_noise((h, w), rng, 6),
        VEGETATION: 0.30 * real("grass") + 0.22 * textures.fractal_noise((h, w), rng, 24, 3),
        SKY: 0.03 * textures.value_noise((h, w), rng, h / 3),
        CAR: 0.04 * textures.value_noise((h, w), rng, 10),
        PERSON: 0.10 * textures.band_noise((h, w), rng, 0.05, 0.25),
        POLE: 0.08 * textures.stripes((h, w), period=5.0, angle=0.0),
    }


def _draw_car(c: _Canvas, rng, tex, x_mid: float, y_bottom: float, width: float) -> None:
    height = width * rng.uniform(0.62, 0.8)
    found = _window(c.h, c.w, y_bottom - height, y_bottom, x_mid - width / 2, x_mid + width / 2)
    if found is None:
        return
    win, ys, xs = found
    u = (xs - (x_mid - width / 2)) / width
    v = (ys - (y_bottom - height)) / height
    body = _superellipse(u, v, 0.5, 0.64, 0.5, 0.26, 4)
    cabin = _superellipse(u, v, 0.5, 0.36, 0.36, 0.22, 4)
    glass = _superellipse(u, v, 0.5, 0.36, 0.3, 0.15, 4)
    wheels = _superellipse(u, v, 0.2, 0.86, 0.1, 0.14) | _superellipse(u, v, 0.8, 0.86, 0.1, 0.14)
    paint = _jitter(rng, _pick(rng, _CAR_COLOURS), 15)
    c.paint(win, body | cabin, CAR, paint, tex[CAR][win])
    c.paint(win, glass, CAR, _jitter(rng, (45, 55, 70), 10), 0.02)
    c.paint(win, wheels & (v > 0.72), CAR, (22, 22, 24), 0.02)
    lights = (np.abs(u - 0.14) < 0.07) | (np.abs(u - 0.86) < 0.07)
    c.paint(win, lights & (np.abs(v - 0.6) < 0.04) & body, CAR, (235, 220, 150), 0.0)


def _draw_person(c: _Canvas, rng, tex, x_mid: float, y_bottom: float, height: float) -> None:
    width = height * 0.36
    found = _window(c.h, c.w, y_bottom - height, y_bottom, x_mid - width / 2, x_mid + width / 2)
    if found is None:
        return
    win, ys, xs = found
    u = (xs - (x_mid - width / 2)) / width
    v = (ys - (y_bottom - height)) / height
    head = _superellipse(u, v, 0.5, 0.08, 0.2, 0.075)
    torso = _superellipse(u, v, 0.5, 0.34, 0.45, 0.19, 3)
    legs = (v >= 0.5) & (((u > 0.24) & (u < 0.47)) | ((u > 0.53) & (u < 0.76)))
    c.paint(win, torso, PERSON, _jitter(rng, _pick(rng, _CLOTHES), 20), tex[PERSON][win])
    c.paint(win, legs, PERSON, _jitter(rng, _pick(rng, _CLOTHES), 15) * 0.7, tex[PERSON][win])
    c.paint(win, head, PERSON, _jitter(rng, _pick(rng, _SKIN), 10), 0.03)


def _draw_pole(c: _Canvas, rng, tex, x_mid: float, y_bottom: float, height: float, width: float):
    found = _window(c.h, c.w, y_bottom - height, y_bottom, x_mid - width / 2, x_mid + width / 2)
    if found is not None:
        win, ys, xs = found
        shape = (ys.shape[0], xs.shape[1])
        shade = np.clip(0.75 + 0.5 * np.abs((xs - x_mid) / max(width, 1.0)), 0.6, 1.2)
        colour = np.broadcast_to(_jitter(rng, (120, 120, 125), 15) * shade[..., None], (*shape, 3))
        c.paint(win, np.ones(shape, bool), POLE, colour, tex[POLE][win])
    if rng.random() < 0.5:  # a traffic sign on top, labelled pole as a simplification
        r = 3.0 * width
        top = y_bottom - height
        found = _window(c.h, c.w, top - r, top + r, x_mid - r, x_mid + r)
        if found is not None:
            win, ys, xs = found
            disc = (ys - top) ** 2 + (xs - x_mid) ** 2 <= r * r
            sign = _pick(rng, ((200, 30, 30), (30, 70, 180), (230, 200, 40)))
            c.paint(win, disc, POLE, sign, 0.02)


def _semantic_scene(rng: np.random.Generator, h: int, w: int, ego_prob: float):
    c = _Canvas(h, w)
    tex = _scene_textures(rng, h, w)
    ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
    xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
    full = (slice(0, h), slice(0, w))
    horizon = h * rng.uniform(0.38, 0.55)
    vx = w * rng.uniform(0.3, 0.7)
    slope = rng.uniform(0.9, 1.8)  # road half-width per pixel below the horizon
    side_ratio = rng.uniform(0.35, 0.8)  # sidewalk width relative to the road half-width
    depth = np.maximum(ys - horizon, 0.0)
    half = depth * slope
    dx = xs - vx

    # Sky: vertical gradient with soft clouds.
    t = np.clip(ys / horizon, 0, 1)[..., None]
    top, low = _jitter(rng, (70, 120, 200), 20), _jitter(rng, (185, 210, 235), 15)
    sky = top * (1 - t) + low * t
    cloud = np.clip(textures.value_noise((h, w), rng, w / 4) - rng.uniform(0.0, 0.5), 0, 0.6)[
        ..., None
    ]
    sky = sky * (1 - cloud) + np.float32(240) * cloud
    c.paint(full, np.ones((h, w), bool), SKY, sky, tex[SKY])

    # Skyline: columns of buildings and trees standing on the horizon, reaching down to the
    # bottom (road and sidewalk are painted over them).
    x = 0.0
    while x < w:
        seg = w * rng.uniform(0.08, 0.3)
        found = _window(h, w, 0, h, x, x + seg)
        x += seg
        if found is None:
            continue
        win, wy, wx = found
        if rng.random() < 0.6:
            roof = horizon - h * rng.uniform(0.12, 0.5)
            mask = np.broadcast_to(wy >= roof, (wy.shape[0], wx.shape[1]))
            c.paint(
                win,
                mask,
                BUILDING,
                _jitter(rng, _pick(rng, _BUILDING_COLOURS), 15),
                tex[BUILDING][win],
            )
            py, px = rng.uniform(8, 18, 2) * h / 224
            fy, fx = rng.uniform(0.35, 0.6, 2)
            windows = (
                mask
                & (((wy - roof) % py) < py * fy)
                & (((wx - x) % px) < px * fx)
                & (wy > roof + py * 0.5)
            )
            c.paint(win, windows, BUILDING, _jitter(rng, (55, 65, 85), 15), 0.03)
        else:
            crown = horizon - h * rng.uniform(0.06, 0.32)
            bumps = h * 0.06 * textures.value_noise((1, wx.shape[1]), rng, 6)
            mask = wy >= crown + bumps
            c.paint(win, mask, VEGETATION, _jitter(rng, (60, 115, 45), 15), tex[VEGETATION][win])

    # Sidewalks (per side, usually present) and the road, in perspective.
    sides = {s: rng.random() < 0.85 for s in (-1, 1)}
    outer = half * (1 + side_ratio)
    walk = (ys > horizon) & (np.abs(dx) < outer) & (np.abs(dx) >= half)
    walk &= np.where(dx < 0, sides[-1], sides[1])
    c.paint(
        full,
        walk,
        SIDEWALK,
        _jitter(rng, _pick(rng, ((170, 165, 160), (175, 135, 125))), 12),
        tex[SIDEWALK],
    )
    road = (ys > horizon) & (np.abs(dx) < half)
    shade = (0.85 + 0.25 * depth / h)[..., None]
    c.paint(full, road, ROAD, _jitter(rng, (85, 85, 92), 10) * shade, tex[ROAD])
    lane_x = vx + depth * slope * rng.uniform(-0.3, 0.3)
    dashes = (np.log1p(depth) * rng.uniform(2.5, 4.0)) % 1.0 < 0.5
    marking = road & (np.abs(xs - lane_x) < np.maximum(0.6, half * 0.03)) & dashes
    c.paint(full, marking, ROAD, _jitter(rng, (215, 215, 205), 10), 0.02)

    # Things, far to near so nearer ones occlude.
    things = []
    span = h - horizon
    for _ in range(int(rng.integers(0, 5))):
        yb = horizon + span * rng.uniform(0.12, 1.05)
        hw = (yb - horizon) * slope
        width = 2 * hw * rng.uniform(0.22, 0.36)
        things.append((yb, "car", vx + rng.uniform(-0.7, 0.7) * max(hw - width / 2, 0), width))
    present = [s for s, ok in sides.items() if ok]
    for kind, count in (("person", int(rng.integers(0, 5))), ("pole", int(rng.integers(0, 4)))):
        for _ in range(count if present else 0):
            s = present[int(rng.integers(len(present)))]
            yb = horizon + span * rng.uniform(0.1, 1.05)
            hw = (yb - horizon) * slope
            where = rng.uniform(0.2, 0.8) if kind == "person" else rng.uniform(0.85, 0.95)
            things.append((yb, kind, vx + s * hw * (1 + side_ratio * where), hw))
    for yb, kind, xm, extent in sorted(things, key=lambda t: t[0]):
        if kind == "car" and extent >= 6:
            _draw_car(c, rng, tex, xm, yb, extent)
        elif kind == "person" and extent * 0.6 >= 8:
            _draw_person(c, rng, tex, xm, yb, extent * rng.uniform(0.55, 0.8))
        elif kind == "pole" and extent >= 8:
            width = max(1.5, extent * 0.025)
            _draw_pole(c, rng, tex, xm, yb, extent * rng.uniform(1.4, 2.2), width)

    if rng.random() < ego_prob:  # ego-vehicle hood at the bottom, ignored like Cityscapes' void
        hood_top = h * (1 - rng.uniform(0.07, 0.13)) + h * 0.06 * ((xs - w / 2) / (w / 2)) ** 2
        hood = np.broadcast_to(ys >= hood_top, (h, w))
        glare = (0.8 + 0.4 * np.exp(-(((xs - w / 2) / (w / 4)) ** 2)))[..., None]
        colour = np.broadcast_to(_jitter(rng, (38, 38, 42), 8) * glare, (h, w, 3))
        c.paint(full, hood, IGNORE_LABEL, colour, 0.03)
    return _finish(c.colour, c.tex, rng), c.label


def semantic_scenes(
    n: int, size=(224, 224), seed: int = 0, ego_vehicle_prob: float = 0.25
) -> SemanticScenes:
    """Street-like scenes with exact dense labels.

    Args:
      n: number of images.
      size: (H, W).
      seed: non-negative int; image i depends only on (seed, i).
      ego_vehicle_prob: probability of an ignore-labelled (255) ego-vehicle hood at the bottom.

    Returns:
      SemanticScenes(images uint8 [n, H, W, 3], labels uint8 [n, H, W], class_names).
    """
    h, w = _check_args(n, size, seed, "semantic_scenes", min_side=32)
    images = np.empty((n, h, w, 3), np.uint8)
    labels = np.empty((n, h, w), np.uint8)
    progress = _Progress(n, "semantic_scenes")
    for i in range(n):
        images[i], labels[i] = _semantic_scene(_item_rng(seed, _SCENES, i), h, w, ego_vehicle_prob)
        progress.update()
    return SemanticScenes(images, labels, list(SCENE_CLASSES))


# ---------------------------------------------------------------------------------------------
# Aerial tiles with rotated objects
# ---------------------------------------------------------------------------------------------

SUPER_NAMES = ("airplane", "ship", "vehicle", "court", "road")


@dataclasses.dataclass(frozen=True)
class RotatedBox:
    """An oriented box in the FAIR1M sense.

    Attributes:
      points: float32 [4, 2] corners (x, y) in pixels, in cyclic order.
      fine_id: fine-grained class, 1..F.
      super_id: supercategory, 1..S.
      instance_id: instance id in its tile's instance_mask, 1..K.
    """

    points: np.ndarray
    fine_id: int
    super_id: int
    instance_id: int


@dataclasses.dataclass(frozen=True)
class AerialTiles:
    """Aerial tiles with rotated objects.

    Attributes:
      images: uint8 [n, H, W, 3].
      fine_mask: uint8 [n, H, W], 0 = background, 1..F fine ids.
      super_mask: uint8 [n, H, W], 0 = background, 1..S (= fine_to_super[fine_mask]).
      instance_mask: uint16 [n, H, W], 0 = background, 1..K per tile (ids match `boxes`).
      boxes: per tile, a list of RotatedBox (instance_id k at position k - 1).
      fine_names: names of fine ids 1..F (index 0 = fine id 1).
      super_names: names of super ids 1..S.
      fine_to_super: int32 [F + 1], fine id -> super id (index 0 = background -> 0).
    """

    images: np.ndarray
    fine_mask: np.ndarray
    super_mask: np.ndarray
    instance_mask: np.ndarray
    boxes: list[list[RotatedBox]]
    fine_names: list[str]
    super_names: list[str]
    fine_to_super: np.ndarray


# Shapes take local coordinates u (along the length, front at +1) and v (across, +-1 at the box
# sides) of pixel centres, and the box size in pixels (L, W) for pixel-thin lines; they return an
# int8 part map: 0 = not the object, 1 = main colour, 2 = secondary, 3 = accent/lines.


def _line(coord, at, half_px_units):
    return np.abs(coord - at) < half_px_units


def _plane(sweep: float, tail: float, engines: tuple[float, ...]):
    def shape(u, v, length, width):
        av = np.abs(v)
        fw = 0.11 * length / width  # fuselage half-width in v units
        fuselage = np.abs(u) ** 6 + (av / fw) ** 2 <= 1
        u_wing = 0.1 - sweep * av
        wing = np.abs(u - u_wing) <= 0.16 * (1 - 0.55 * av)
        u_tail = -0.84 - 0.5 * sweep * av
        stab = (av <= tail) & (np.abs(u - u_tail) <= 0.08 * (1 - 0.5 * av / tail)) & (u >= -1)
        parts = np.where(fuselage | wing | stab, 1, 0).astype(np.int8)
        parts[fuselage & (u < -0.6)] = 3
        for e in engines:
            pod = _superellipse(u, av, 0.1 - sweep * e + 0.13, e, 0.08, 0.045 * length / width)
            parts[pod] = 2
        return parts

    return shape


def _cargo_ship(u, v, length, width):
    av = np.abs(v)
    hull = np.where(u <= 0.7, av <= 1, av <= (1 - u) / 0.3)
    parts = np.where(hull, 1, 0).astype(np.int8)
    hatches = (u > -0.55) & (u < 0.65) & (((u + 0.55) % 0.13) < 0.1) & (av <= 0.72)
    parts[hull & hatches] = 2
    parts[(u > -0.93) & (u < -0.72) & (av <= 0.8)] = 3
    return parts


def _motorboat(u, v, length, width):
    profile = np.where(u <= 0.2, 1.0, np.sqrt(np.clip(1 - ((u - 0.2) / 0.8) ** 2, 0, 1)))
    hull = np.abs(v) <= profile
    parts = np.where(hull, 1, 0).astype(np.int8)
    parts[hull & (u > -0.5) & (u < 0.25) & (np.abs(v) <= 0.55)] = 2
    return parts


def _tugboat(u, v, length, width):
    hull = np.abs(u) ** 2.5 + np.abs(v) ** 2.5 <= 1
    parts = np.where(hull, 1, 0).astype(np.int8)
    parts[hull & (np.abs(u + 0.1) < 0.35) & (np.abs(v) < 0.55)] = 3
    parts[hull & (u > 0.45) & (np.abs(v) < 0.3)] = 2
    return parts


def _small_car(u, v, length, width):
    body = u**4 + v**4 <= 1
    parts = np.where(body, 1, 0).astype(np.int8)
    glass = ((u > 0.2) & (u < 0.45) | (u > -0.75) & (u < -0.58)) & (np.abs(v) < 0.8)
    parts[body & glass] = 2
    return parts


def _bus(u, v, length, width):
    body = np.abs(u) ** 10 + np.abs(v) ** 10 <= 1
    parts = np.where(body, 1, 0).astype(np.int8)
    parts[body & (u > -0.35) & (u < 0.0) & (np.abs(v) < 0.55)] = 3
    parts[body & (u > 0.9) & (np.abs(v) < 0.85)] = 2
    return parts


def _cargo_truck(u, v, length, width):
    cab = ((u - 0.81) / 0.19) ** 4 + v**4 <= 1
    trailer = (u >= -1) & (u <= 0.56) & (np.abs(v) <= 0.95)
    parts = np.where(trailer, 1, 0).astype(np.int8)
    parts[cab] = 2
    return parts


def _tennis_court(u, v, length, width):
    pu, pv = 2.0 / length, 2.0 / width  # one pixel in u / v units
    parts = np.ones(np.broadcast_shapes(u.shape, v.shape), np.int8)
    au, av = np.abs(u), np.abs(v)
    lines = (
        (_line(au, 0.92, pu) & (av <= 0.86))
        | (_line(av, 0.86, pv) & (au <= 0.92))
        | (_line(av, 0.66, pv) & (au <= 0.92))
        | (_line(au, 0.48, pu) & (av <= 0.66))
        | (_line(v, 0.0, pv) & (au <= 0.48))
    )
    parts[lines] = 3
    parts[_line(u, 0.0, pu) & (av <= 0.95)] = 2
    return parts


def _basketball_court(u, v, length, width):
    pu, pv = 2.0 / length, 2.0 / width
    parts = np.ones(np.broadcast_shapes(u.shape, v.shape), np.int8)
    au, av = np.abs(u), np.abs(v)
    parts[(au > 0.62) & (au < 0.92) & (av < 0.25)] = 2
    rho = np.sqrt((u * length / 2) ** 2 + (v * width / 2) ** 2)
    lines = (
        (_line(au, 0.92, pu) & (av <= 0.88))
        | (_line(av, 0.88, pv) & (au <= 0.92))
        | (_line(u, 0.0, pu) & (av <= 0.88))
        | (np.abs(rho - 0.11 * length) < 0.7)
    )
    parts[lines] = 3
    return parts


def _roundabout(u, v, length, width):
    r = np.sqrt(u * u + v * v)
    parts = np.where(r <= 1, 1, 0).astype(np.int8)
    parts[r <= 0.5] = 2
    dashes = (np.arctan2(v, u) * 16 / np.pi) % 2 < 1
    parts[(np.abs(r - 0.76) < 2.0 / length) & dashes] = 3
    return parts


def _intersection(u, v, length, width):
    au, av = np.abs(u), np.abs(v)
    road = (au <= 0.28) | (av <= 0.28)
    parts = np.where(road, 1, 0).astype(np.int8)
    px = 2.0 / length
    dash_u = ((au * length / 2) % 8) < 4
    dash_v = ((av * width / 2) % 8) < 4
    centre = (_line(v, 0, px) & (au > 0.42) & dash_u) | (_line(u, 0, px) & (av > 0.42) & dash_v)
    zebra = ((au > 0.3) & (au < 0.38) & (av < 0.28) & (((v * width / 2) % 3) < 1.5)) | (
        (av > 0.3) & (av < 0.38) & (au < 0.28) & (((u * length / 2) % 3) < 1.5)
    )
    parts[road & (centre | zebra)] = 3
    return parts


@dataclasses.dataclass(frozen=True)
class _FineSpec:
    name: str
    super_id: int
    length: tuple[float, float]  # pixels at 224 px tiles
    aspect: tuple[float, float]  # width / length
    shape: Callable
    main: tuple  # palette of main colours
    second: tuple
    accent: tuple
    texture: float  # texture contrast


_WHITE, _GREYS = ((232, 232, 236), (210, 212, 218)), ((90, 90, 95), (60, 60, 66))
_LIVERY = ((200, 30, 40), (30, 60, 170), (20, 130, 90), (230, 160, 30), (120, 40, 140))
_COURT_LINES = ((240, 240, 240),)


# `fmt: skip` below: one _FineSpec per fine class, its fields aligned as table columns.
FINE_SPECS = (
    # name, super id, length px, width/length, shape, main / second / accent palettes, texture
    _FineSpec("Boeing737", 1, (36, 42), (0.92, 1.0), _plane(0.45, 0.3, (0.33,)), _WHITE, _GREYS,
              _LIVERY, 0.04),
    _FineSpec("Boeing747", 1, (56, 66), (0.88, 0.95), _plane(0.6, 0.32, (0.3, 0.6)), _WHITE,
              _GREYS, _LIVERY, 0.04),
    _FineSpec("A220", 1, (25, 30), (0.95, 1.05), _plane(0.25, 0.3, (0.28,)), _WHITE, _GREYS,
              _LIVERY, 0.04),
    _FineSpec("Motorboat", 2, (10, 16), (0.32, 0.4), _motorboat, _WHITE,
              ((90, 130, 180), (180, 150, 110)), _WHITE, 0.05),
    _FineSpec("Dry Cargo Ship", 2, (60, 90), (0.14, 0.18), _cargo_ship,
              ((70, 70, 75), (120, 40, 35), (40, 60, 90)),
              ((170, 70, 40), (60, 120, 70), (60, 90, 150)), _WHITE, 0.08),
    _FineSpec("Tugboat", 2, (18, 24), (0.35, 0.42), _tugboat,
              ((170, 35, 30), (30, 30, 35), (30, 60, 120)), _GREYS, _WHITE, 0.05),
    _FineSpec("Small Car", 3, (8, 11), (0.42, 0.5), _small_car, _CAR_COLOURS, ((40, 45, 55),),
              _WHITE, 0.03),
    _FineSpec("Bus", 3, (22, 28), (0.23, 0.28), _bus,
              ((230, 230, 225), (220, 180, 40), (190, 40, 40)), ((40, 45, 55),),
              ((180, 180, 185),), 0.03),
    _FineSpec("Cargo Truck", 3, (16, 22), (0.3, 0.36), _cargo_truck,
              ((215, 215, 215), (90, 100, 140), (160, 150, 130)),
              ((180, 40, 40), (40, 70, 150), (230, 230, 230)), _WHITE, 0.04),
    _FineSpec("Tennis Court", 4, (46, 54), (0.48, 0.54), _tennis_court,
              ((60, 120, 80), (50, 90, 150), (170, 90, 60)), ((40, 40, 40),), _COURT_LINES, 0.06),
    _FineSpec("Basketball Court", 4, (52, 60), (0.52, 0.58), _basketball_court,
              ((190, 110, 60), (60, 90, 140), (120, 120, 125)), ((150, 60, 50), (200, 200, 80)),
              _COURT_LINES, 0.06),
    _FineSpec("Roundabout", 5, (50, 70), (1.0, 1.0), _roundabout, ((100, 100, 104),),
              ((70, 120, 60),), _COURT_LINES, 0.12),
    _FineSpec("Intersection", 5, (56, 76), (1.0, 1.0), _intersection, ((95, 95, 100),),
              ((95, 95, 100),), _COURT_LINES, 0.12),
)  # fmt: skip
FINE_NAMES = tuple(f.name for f in FINE_SPECS)
FINE_TO_SUPER = np.array([0] + [f.super_id for f in FINE_SPECS], np.int32)

# Background grounds: (colour, texture name, texture scale, contrast).
_GROUNDS = {
    "grass": ((95, 120, 70), "grass", 0.5, 0.25),
    "soil": ((150, 125, 95), "gravel", 0.5, 0.2),
    "concrete": ((165, 165, 160), "gravel", 0.25, 0.08),
    "tarmac": ((100, 100, 104), "gravel", 0.25, 0.12),
    "water": ((45, 75, 100), "moon", 1, 0.15),
}
# Likely ground under each supercategory's theme: (primary, secondary).
_THEME_GROUNDS = {
    1: (("concrete", "tarmac"), ("grass",)),
    2: (("water",), ("concrete", "soil")),
    3: (("tarmac", "concrete"), ("grass", "soil")),
    4: (("grass", "soil"), ("concrete",)),
    5: (("grass", "soil"), ("grass", "concrete")),
}


def _ground(rng, h, w, kind):
    colour, name, scale, contrast = _GROUNDS[kind]
    tex = contrast * textures.random_crop(textures.real_texture(name, scale), (h, w), rng)
    tex += 0.06 * textures.value_noise((h, w), rng, max(h, w) / 3)
    return _jitter(rng, colour, 12), tex


def _aerial_background(rng, h, w, theme_super: int):
    primary, secondary = _THEME_GROUNDS[theme_super]
    col_a, tex_a = _ground(rng, h, w, primary[int(rng.integers(len(primary)))])
    col_b, tex_b = _ground(rng, h, w, secondary[int(rng.integers(len(secondary)))])
    # Hard-edged patches of the secondary ground (fields, lawns, quays).
    b = textures.value_noise((h, w), rng, max(h, w) / 2.5) > rng.uniform(0.0, 0.8)
    colour = np.where(b[..., None], col_b, col_a).astype(np.float32)
    tex = np.where(b, tex_b, tex_a).astype(np.float32)
    if rng.random() < 0.4:  # a straight road crossing the tile (background, not an object)
        ang = rng.uniform(0, np.pi)
        ys = (np.arange(h, dtype=np.float32) + 0.5)[:, None]
        xs = (np.arange(w, dtype=np.float32) + 0.5)[None, :]
        dist = (xs - rng.uniform(0, w)) * np.sin(ang) - (ys - rng.uniform(0, h)) * np.cos(ang)
        road = np.abs(dist) < rng.uniform(4, 9) * h / 224
        colour[road] = _jitter(rng, (80, 80, 84), 8)
        tex[road] *= 0.4
    return colour, tex


def _rotated_corners(cx, cy, length, width, angle) -> np.ndarray:
    a = np.array([np.cos(angle), np.sin(angle)])  # length axis
    b = np.array([-np.sin(angle), np.cos(angle)])  # width axis
    signs = ((-1, -1), (1, -1), (1, 1), (-1, 1))
    return np.array(
        [(cx, cy) + su * length / 2 * a + sv * width / 2 * b for su, sv in signs], np.float32
    )


def _aerial_tile(rng, h, w, objects_range, object_scale):
    nf = len(FINE_SPECS)
    themes = rng.choice(nf, size=int(rng.integers(1, 3)), replace=False)
    colour, tex = _aerial_background(rng, h, w, FINE_SPECS[themes[0]].super_id)
    c = _Canvas(h, w, np.uint16)
    c.colour, c.tex = colour, tex
    fine = np.zeros((h, w), np.uint8)
    shared_angle = rng.uniform(0, 2 * np.pi) if rng.random() < 0.5 else None
    placed = []  # (cx, cy, radius)
    objects = []  # (fine index, corners)
    tile_scale = min(h, w) / 224 * object_scale
    for _ in range(int(rng.integers(objects_range[0], objects_range[1] + 1))):
        f = int(themes[int(rng.integers(len(themes)))] if rng.random() < 0.7 else rng.integers(nf))
        spec = FINE_SPECS[f]
        length = rng.uniform(*spec.length) * tile_scale
        width = length * rng.uniform(*spec.aspect)
        radius = 0.5 * np.hypot(length, width)
        for _attempt in range(20):
            cx, cy = rng.uniform(0, w), rng.uniform(0, h)
            if all(np.hypot(cx - x, cy - y) >= 0.85 * (radius + r) for x, y, r in placed):
                break
        else:
            continue
        angle = rng.uniform(0, 2 * np.pi) if shared_angle is None else shared_angle
        if shared_angle is not None:
            angle += rng.normal(0, 0.05)
        placed.append((cx, cy, radius))
        corners = _rotated_corners(cx, cy, length, width, angle)
        found = _window(
            h, w, corners[:, 1].min(), corners[:, 1].max(), corners[:, 0].min(), corners[:, 0].max()
        )
        if found is None:
            continue
        win, ys, xs = found
        ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
        u = ((xs - cx) * ca + (ys - cy) * sa) / (length / 2)
        v = (-(xs - cx) * sa + (ys - cy) * ca) / (width / 2)
        inside = (np.abs(u) <= 1) & (np.abs(v) <= 1)
        parts = np.where(inside, spec.shape(u, v, length, width), 0)
        parts[c.label[win] != 0] = 0  # never paint over an earlier object
        if not parts.any():
            continue
        k = len(objects) + 1
        obj_tex = spec.texture * textures.random_crop(
            textures.real_texture("gravel", 0.5), parts.shape, rng
        )
        palettes = (spec.main, spec.second, spec.accent)
        for part, palette in zip((1, 2, 3), palettes):
            c.paint(win, parts == part, k, _jitter(rng, _pick(rng, palette), 14), obj_tex)
        fine[win][parts > 0] = f + 1
        objects.append((f, corners))
    # Sun shadows: objects darken the background just beside them (masks stay object-only).
    shift = max(1, int(round(2 * tile_scale)))
    obj = c.label > 0
    shadow = np.zeros_like(obj)
    shadow[shift:, shift:] = obj[:-shift, :-shift]
    shadow &= ~obj
    c.colour[shadow] *= 0.62
    image = _finish(c.colour, c.tex, rng)
    boxes = [
        RotatedBox(corners, f + 1, int(FINE_TO_SUPER[f + 1]), k + 1)
        for k, (f, corners) in enumerate(objects)
    ]
    return image, fine, c.label, boxes


def aerial_tiles(
    n: int,
    size=(224, 224),
    seed: int = 0,
    objects_per_tile: tuple[int, int] = (2, 7),
    object_scale: float = 1.0,
) -> AerialTiles:
    """Aerial tiles: terrain with rotated objects of fine-grained classes.

    Each tile has 1-2 "theme" fine classes (70 % of its objects, placed with a shared orientation
    half of the time, like parked rows) on a ground that suits the theme (water under ships, aprons
    under airplanes), plus objects of any class. Objects do not overlap; each differs in colour and
    texture; they may be cut by the tile border. Masks are exactly the painted object pixels and
    every object pixel's centre lies inside its rotated box.

    Args:
      n: number of tiles.
      size: (H, W); object sizes scale with min(H, W) / 224.
      seed: non-negative int; tile i depends only on (seed, i).
      objects_per_tile: (min, max) objects attempted per tile.
      object_scale: extra size multiplier for all objects.

    Returns:
      AerialTiles (see its docstring); fine ids 1..13 in 5 supercategories.
    """
    h, w = _check_args(n, size, seed, "aerial_tiles", min_side=32)
    lo, hi = objects_per_tile
    if not 0 <= lo <= hi:
        raise errors.ConfigError(
            f"aerial_tiles: objects_per_tile={objects_per_tile}: need 0<=min<=max"
        )
    images = np.empty((n, h, w, 3), np.uint8)
    fine = np.empty((n, h, w), np.uint8)
    inst = np.empty((n, h, w), np.uint16)
    boxes = []
    progress = _Progress(n, "aerial_tiles")
    for i in range(n):
        images[i], fine[i], inst[i], b = _aerial_tile(
            _item_rng(seed, _AERIAL, i), h, w, (lo, hi), object_scale
        )
        boxes.append(b)
        progress.update()
    return AerialTiles(
        images=images,
        fine_mask=fine,
        super_mask=FINE_TO_SUPER[fine].astype(np.uint8),
        instance_mask=inst,
        boxes=boxes,
        fine_names=list(FINE_NAMES),
        super_names=list(SUPER_NAMES),
        fine_to_super=FINE_TO_SUPER.copy(),
    )


# ---------------------------------------------------------------------------------------------
# Videos with tracked objects
# ---------------------------------------------------------------------------------------------

VIDEO_CATEGORIES = ("car", "pedestrian", "bicycle")


@dataclasses.dataclass(frozen=True)
class Videos:
    """Short videos of moving objects.

    Attributes:
      frames: uint8 [V, T, H, W, 3].
      tracks: per video, per frame, (boxes float32 [K, 4] as x1, y1, x2, y2 clipped to the frame,
        track_ids int32 [K] (1-based, unique within a video), category_ids int32 [K] (indices into
        category_names)). An object is listed in a frame when at least `min_visible` of its pixels
        are visible there.
      category_names: the category names.
      masks: uint16 [V, T, H, W] track id of the visible object at each pixel (0 = background).
    """

    frames: np.ndarray
    tracks: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]
    category_names: list[str]
    masks: np.ndarray


def _sprite_car(u, v):
    body = _superellipse(u, v, 0.5, 0.6, 0.5, 0.3, 4) | _superellipse(u, v, 0.5, 0.3, 0.34, 0.2, 4)
    parts = np.where(body, 1, 0).astype(np.int8)
    parts[_superellipse(u, v, 0.5, 0.31, 0.28, 0.13, 4)] = 2
    wheels = _superellipse(u, v, 0.2, 0.88, 0.1, 0.12) | _superellipse(u, v, 0.8, 0.88, 0.1, 0.12)
    parts[wheels] = 2
    return parts


def _sprite_pedestrian(u, v):
    body = _superellipse(u, v, 0.5, 0.38, 0.45, 0.22, 3)
    legs = (v >= 0.55) & (((u > 0.22) & (u < 0.46)) | ((u > 0.54) & (u < 0.78)))
    parts = np.where(body | legs, 1, 0).astype(np.int8)
    parts[legs] = 2
    parts[_superellipse(u, v, 0.5, 0.09, 0.22, 0.09)] = 3
    return parts


def _sprite_bicycle(u, v):
    r = np.minimum(np.hypot(u - 0.22, (v - 0.68) * 1.3), np.hypot(u - 0.78, (v - 0.68) * 1.3))
    wheels = np.abs(r - 0.19) < 0.05
    frame = (np.abs(v - 0.62) < 0.05) & (u > 0.22) & (u < 0.78)
    rider = _superellipse(u, v, 0.5, 0.3, 0.2, 0.3, 2.5)
    parts = np.where(wheels | frame | rider, 2, 0).astype(np.int8)
    parts[rider] = 1
    parts[_superellipse(u, v, 0.5, 0.05, 0.12, 0.05)] = 3
    return parts


_SPRITES = (_sprite_car, _sprite_pedestrian, _sprite_bicycle)
_SPRITE_SIZES = (((40, 70), (0.55, 0.7)), ((14, 22), (2.4, 3.0)), ((34, 48), (0.8, 1.0)))
_APPEARANCE = 32  # resolution of an object's identity texture


def _video(rng, n_frames: int, h: int, w: int, objects_range, min_visible: int, speed: float):
    scale = min(h, w) / 224
    margin = int(24 * scale) + 2
    bh, bw = h + 2 * margin, w + 2 * margin
    colour, tex = _aerial_background(rng, bh, bw, int(rng.integers(3, 6)))
    for _ in range(int(rng.integers(2, 6))):  # static landmarks for the background
        y0, x0 = rng.uniform(0, bh), rng.uniform(0, bw)
        sl = (
            slice(int(y0), int(y0 + rng.uniform(15, 50) * scale)),
            slice(int(x0), int(x0 + rng.uniform(15, 50) * scale)),
        )
        colour[sl] = _jitter(rng, _pick(rng, _BUILDING_COLOURS), 20)
    pan = rng.uniform(-1, 1, 2) * margin * 0.8
    objs = []
    for k in range(int(rng.integers(objects_range[0], objects_range[1] + 1))):
        cat = int(rng.integers(len(VIDEO_CATEGORIES)))
        (wlo, whi), (alo, ahi) = _SPRITE_SIZES[cat]
        ow = rng.uniform(wlo, whi) * scale
        oh = ow * rng.uniform(alo, ahi)
        start = rng.uniform([0.15 * w, 0.15 * h], [0.85 * w, 0.85 * h])
        direction = rng.uniform(0, 2 * np.pi)
        if rng.random() < 0.3:  # starts just outside one border, heading inwards
            axis = int(rng.integers(2))
            start[axis] = rng.choice([-0.15, 1.15]) * (w, h)[axis]
            to_centre = np.array([w / 2, h / 2]) - start
            direction = np.arctan2(to_centre[1], to_centre[0]) + rng.uniform(-0.6, 0.6)
        velocity = (
            rng.uniform(0.5, 4.0) * speed * scale * np.array([np.cos(direction), np.sin(direction)])
        )
        appearance = (
            _jitter(rng, _pick(rng, _CAR_COLOURS + _CLOTHES), 25)[None, None]
            * (
                1
                + 0.25
                * textures.stripes((_APPEARANCE,) * 2, rng.uniform(4, 12), rng.uniform(0, np.pi))[
                    ..., None
                ]
            )
            * (1 + 0.15 * textures.band_noise((_APPEARANCE,) * 2, rng, 0.05, 0.3)[..., None])
        )
        objs.append(
            dict(
                track_id=k + 1,
                cat=cat,
                size=np.array([ow, oh]),
                start=start,
                velocity=velocity,
                wobble=rng.uniform(0, 3 * scale, 2),
                omega=rng.uniform(0.1, 0.4),
                phase=rng.uniform(0, 2 * np.pi, 2),
                growth=rng.uniform(-0.03, 0.03),
                appearance=appearance.astype(np.float32),
                second=_jitter(rng, (35, 35, 40), 10),
                accent=_jitter(rng, _pick(rng, _SKIN), 10),
                bright=rng.uniform(0.05, 0.12),
                z=rng.random(),
            )
        )
    objs.sort(key=lambda o: o["z"])  # far first, near objects occlude
    frames = np.empty((n_frames, h, w, 3), np.uint8)
    masks = np.zeros((n_frames, h, w), np.uint16)
    tracks = []
    for t in range(n_frames):
        off = margin + pan * np.sin(0.5 * np.pi * t / max(n_frames - 1, 1))
        oy, ox = int(round(off[1])), int(round(off[0]))
        c = _Canvas(h, w, np.uint16)
        c.colour = colour[oy : oy + h, ox : ox + w].copy()
        c.tex = tex[oy : oy + h, ox : ox + w].copy()
        extents = {}
        for o in objs:
            centre = (
                o["start"] + o["velocity"] * t + o["wobble"] * np.sin(o["omega"] * t + o["phase"])
            )
            ow, oh = o["size"] * np.exp(o["growth"] * t)
            x1, y1 = centre[0] - ow / 2, centre[1] - oh / 2
            found = _window(h, w, y1, y1 + oh, x1, x1 + ow)
            if found is None:
                continue
            win, ys, xs = found
            u, v = (xs - x1) / ow, (ys - y1) / oh
            inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)  # the box bounds the sprite
            parts = np.where(inside, _SPRITES[o["cat"]](u, v), 0)
            iu = np.clip((u * _APPEARANCE).astype(np.int64), 0, _APPEARANCE - 1)
            iv = np.clip((v * _APPEARANCE).astype(np.int64), 0, _APPEARANCE - 1)
            # Appearance drifts slightly over time (lighting), identity pattern stays.
            look = o["appearance"][iv, iu] * (1 + o["bright"] * np.sin(0.3 * t + o["phase"][0]))
            c.paint(win, parts == 1, o["track_id"], look, 0.02)
            c.paint(win, parts == 2, o["track_id"], o["second"], 0.02)
            c.paint(win, parts == 3, o["track_id"], o["accent"], 0.02)
            extents[o["track_id"]] = (
                o["cat"],
                max(x1, 0),
                max(y1, 0),
                min(x1 + ow, w),
                min(y1 + oh, h),
            )
        frames[t] = _finish(c.colour, c.tex, rng)
        masks[t] = c.label
        visible = np.bincount(c.label.ravel(), minlength=len(objs) + 1)
        ids = [k for k in sorted(extents) if visible[k] >= min_visible]
        tracks.append(
            (
                np.array([extents[k][1:] for k in ids], np.float32).reshape(-1, 4),
                np.array(ids, np.int32),
                np.array([extents[k][0] for k in ids], np.int32),
            )
        )
    return frames, tracks, masks


def videos(
    n_videos: int,
    n_frames: int,
    size=(224, 224),
    seed: int = 0,
    objects_per_video: tuple[int, int] = (3, 6),
    min_visible: int = 8,
    speed: float = 1.0,
) -> Videos:
    """Videos of objects moving smoothly over a slowly panning textured background.

    Each object has a category (car, pedestrian, bicycle), an identity appearance (colour and an
    oriented pattern) that drifts slightly in brightness, a linear-plus-wobble trajectory, and a
    smooth exponential scale change; some start outside the frame and enter, others leave.

    Args:
      n_videos: number of videos V.
      n_frames: frames per video T (>= 1).
      size: (H, W).
      seed: non-negative int; video i depends only on (seed, i).
      objects_per_video: (min, max) objects per video.
      min_visible: visible pixels an object needs in a frame to be listed there.
      speed: multiplier of the object speeds (0.5-4 px/frame at 224 px).

    Returns:
      Videos(frames uint8 [V, T, H, W, 3], tracks, category_names, masks uint16 [V, T, H, W]).
    """
    h, w = _check_args(n_videos, size, seed, "videos", min_side=32)
    if not isinstance(n_frames, int | np.integer) or n_frames < 1:
        raise errors.ConfigError(f"videos: n_frames={n_frames!r}: expected an int >= 1")
    frames = np.empty((n_videos, n_frames, h, w, 3), np.uint8)
    masks = np.empty((n_videos, n_frames, h, w), np.uint16)
    tracks = []
    progress = _Progress(n_videos, "videos")
    for i in range(n_videos):
        frames[i], tr, masks[i] = _video(
            _item_rng(seed, _VIDEOS, i), n_frames, h, w, objects_per_video, min_visible, speed
        )
        tracks.append(tr)
        progress.update()
    return Videos(frames, tracks, list(VIDEO_CATEGORIES), masks)


# ---------------------------------------------------------------------------------------------
# Scene classification (land use)
# ---------------------------------------------------------------------------------------------

SCENE_CLASSIFICATION_CLASSES = (
    "agricultural",
    "beach",
    "denseresidential",
    "forest",
    "parkinglot",
    "river",
    "runway",
    "storagetanks",
)


def _rotated_coords(h, w, angle):
    ys = np.arange(h, dtype=np.float32)[:, None] + 0.5 - h / 2
    xs = np.arange(w, dtype=np.float32)[None, :] + 0.5 - w / 2
    ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return xs * ca + ys * sa, -xs * sa + ys * ca


def _land_use(rng, cls: str, h: int, w: int):
    s = min(h, w) / 256
    a, b = _rotated_coords(h, w, rng.uniform(0, np.pi))
    grass_col, grass_tex = _ground(rng, h, w, "grass")
    colour = np.broadcast_to(grass_col, (h, w, 3)).astype(np.float32)
    tex = grass_tex.copy()

    def put(mask, col, tx):
        colour[mask] = col if np.ndim(col) == 1 else np.broadcast_to(col, colour.shape)[mask]
        tex[mask] = tx if np.ndim(tx) == 0 else np.broadcast_to(tx, tex.shape)[mask]

    if cls == "agricultural":
        width = rng.uniform(20, 50) * s
        strip = np.floor(a / width).astype(np.int64)
        palette = np.array(
            [
                _jitter(rng, c, 15)
                for c in (
                    (110, 140, 60),
                    (170, 150, 90),
                    (90, 120, 50),
                    (190, 170, 110),
                    (130, 110, 80),
                )
            ]
        )
        put(
            np.ones((h, w), bool),
            palette[strip % len(palette)],
            0.15 * textures.stripes((h, w), rng.uniform(3, 6) * s, rng.uniform(0, np.pi))
            + 0.1 * grass_tex,
        )
    elif cls == "beach":
        shore = a + 20 * s * np.sin(b / (40 * s) + rng.uniform(0, 6))
        level = rng.uniform(-40, 40) * s
        sand = shore < level
        put(
            sand,
            _jitter(rng, (215, 195, 150), 12),
            0.12 * textures.random_crop(textures.real_texture("gravel", 0.25), (h, w), rng),
        )
        put(
            ~sand,
            _jitter(rng, (40, 110, 150), 15),
            0.12 * textures.stripes((h, w), rng.uniform(6, 12) * s, rng.uniform(0, np.pi)),
        )
        foam = (shore >= level) & (shore < level + rng.uniform(2, 5) * s)
        put(foam, _jitter(rng, (235, 235, 230), 5), 0.05)
    elif cls == "denseresidential":
        cell = rng.uniform(22, 32) * s
        ia, ib = np.floor(a / cell), np.floor(b / cell)
        fa, fb = a / cell - ia, b / cell - ib
        house = (fa > 0.12) & (fa < 0.88) & (fb > 0.15) & (fb < 0.85)
        street = np.abs(((b / cell) % 4) - 2) < 0.12
        roofs = np.array(
            [
                _jitter(rng, c, 15)
                for c in ((170, 70, 50), (120, 120, 125), (190, 150, 110), (90, 60, 50))
            ]
        )
        idx = ((ia * 7 + ib * 13).astype(np.int64)) % len(roofs)
        ridge = np.where(fb < 0.5, 0.85, 1.1)[..., None]
        put(house & ~street, roofs[idx] * ridge, 0.05)
        put(street, _jitter(rng, (95, 95, 100), 8), 0.05)
    elif cls == "forest":
        canopy = textures.fractal_noise((h, w), rng, 12 * s, 3)
        col = _jitter(rng, (45, 85, 40), 10) * (1 + 0.35 * canopy)[..., None]
        put(np.ones((h, w), bool), col, 0.25 * grass_tex)
    elif cls == "parkinglot":
        put(
            np.ones((h, w), bool),
            _jitter(rng, (105, 105, 108), 8),
            0.1 * textures.random_crop(textures.real_texture("gravel", 0.25), (h, w), rng),
        )
        slot_w, slot_l = rng.uniform(9, 11) * s, rng.uniform(18, 22) * s
        ia, ib = np.floor(a / slot_w), np.floor(b / (slot_l * 1.5))
        fa, fb = a / slot_w - ia, b / (slot_l * 1.5) - ib
        put((fa < 0.08) & (fb < 0.66), (230, 230, 225), 0.0)
        occupied = ((ia * 31 + ib * 17) % 10) < rng.integers(5, 10)
        car = occupied & (fa > 0.2) & (fa < 0.8) & (fb > 0.06) & (fb < 0.6)
        cars = np.array([_jitter(rng, c, 20) for c in _CAR_COLOURS])
        put(car, cars[((ia * 5 + ib * 3).astype(np.int64)) % len(cars)], 0.03)
    elif cls == "river":
        centre = 30 * s * np.sin(a / (rng.uniform(40, 80) * s) + rng.uniform(0, 6))
        water = np.abs(b - centre) < rng.uniform(12, 30) * s
        put(water, _jitter(rng, (50, 85, 105), 12), 0.06 * textures.value_noise((h, w), rng, 8 * s))
    elif cls == "runway":
        half = rng.uniform(18, 28) * s
        strip = np.abs(b) < half
        put(strip, _jitter(rng, (120, 120, 122), 8), 0.05)
        centre = strip & (np.abs(b) < 1.2 * s) & ((a % (24 * s)) < 12 * s)
        put(centre, (235, 235, 235), 0.0)
        edges = strip & (np.abs(np.abs(b) - half + 2 * s) < 1.0 * s)
        put(edges, (220, 220, 220), 0.0)
    elif cls == "storagetanks":
        put(np.ones((h, w), bool), _jitter(rng, (170, 165, 155), 10), 0.08 * grass_tex)
        ys = np.arange(h, dtype=np.float32)[:, None] + 0.5
        xs = np.arange(w, dtype=np.float32)[None, :] + 0.5
        for _ in range(int(rng.integers(3, 9))):
            r = rng.uniform(10, 28) * s
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            d = np.sqrt((ys - cy) ** 2 + (xs - cx) ** 2)
            tank = d < r
            shade = (0.85 + 0.25 * (1 - d / r))[..., None]
            put(tank, _jitter(rng, (225, 225, 220), 10) * shade, 0.02)
            put(np.abs(d - 0.6 * r) < 0.8 * s, (150, 150, 150), 0.0)
    # Season, sensor and sun differ between images: a per-image brightness and colour cast keeps
    # colour statistics alone from telling the classes apart.
    colour *= rng.uniform(0.7, 1.3) * rng.uniform(0.85, 1.15, 3).astype(np.float32)
    return _finish(colour, tex, rng)


def scene_classification(
    n_per_class: int, size=(256, 256), seed: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Land-use scenes, one class per image (UC Merced-like).

    Classes are structures at several scales (fields, roofs, cars in slots, tanks, water) over
    surface textures, at a random orientation; downscaling an image removes the fine detail first,
    which simulates a coarser ground-sample distance.

    Args:
      n_per_class: images per class.
      size: (H, W).
      seed: non-negative int; image j of class c depends only on (seed, c, j).

    Returns:
      images uint8 [C * n_per_class, H, W, 3] in class-major order, labels int32 [C * n_per_class],
      class_names (C = 8).
    """
    h, w = _check_args(n_per_class, size, seed, "scene_classification", min_side=32)
    nc = len(SCENE_CLASSIFICATION_CLASSES)
    images = np.empty((nc * n_per_class, h, w, 3), np.uint8)
    progress = _Progress(nc * n_per_class, "scene_classification")
    for c, name in enumerate(SCENE_CLASSIFICATION_CLASSES):
        for j in range(n_per_class):
            rng = np.random.default_rng([seed, _SCENE_CLS, c, j])
            images[c * n_per_class + j] = _land_use(rng, name, h, w)
            progress.update()
    labels = np.repeat(np.arange(nc, dtype=np.int32), n_per_class)
    return images, labels, list(SCENE_CLASSIFICATION_CLASSES)
