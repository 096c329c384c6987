"""Procedural renderer: a `Scene` becomes an anti-aliased RGB image with mild jitter and noise.

Shapes are drawn at 4x resolution and downsampled (anti-aliasing); positions, sizes, rotation,
colour and background are jittered so that no two renders of a scene are identical.
`scene_layout` (where each object goes) and `draw_object` (one object on a canvas) are `render`'s
two steps, public so that a consumer draws the same objects on a canvas of its own
(consumers/exploration/env.py draws them over a wall).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from generators.world.concepts import POSITIONS, RGB, SIZE_FRACTION, Obj, Scene

SUPERSAMPLE = 4


def _polygon(shape: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    def ring(n: int, radii: list[float], offset: float) -> list[tuple[float, float]]:
        pts = []
        for i in range(n * len(radii)):
            a = offset + angle + 2 * math.pi * i / (n * len(radii))
            rr = r * radii[i % len(radii)]
            pts.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
        return pts

    if shape == "square":
        return ring(4, [1.0], math.pi / 4)
    if shape == "triangle":
        return [(x, y + 0.2 * r) for x, y in ring(3, [1.15], -math.pi / 2)]
    if shape == "star":
        return ring(5, [1.15, 0.45], -math.pi / 2)
    if shape == "hexagon":
        return ring(6, [1.0], 0.0)
    if shape == "diamond":
        return [(cx, cy - 1.15 * r), (cx + 0.7 * r, cy), (cx, cy + 1.15 * r), (cx - 0.7 * r, cy)]
    raise ValueError(f"no polygon for shape {shape!r}")


def draw_object(draw: ImageDraw.ImageDraw, obj: Obj, cx: float, cy: float, r: float,
                rng: np.random.Generator) -> None:
    """Draw `obj` centred at (`cx`, `cy`) with radius `r` (pixels of the canvas `draw` paints on), its
    colour and rotation jittered from `rng`."""
    rgb = tuple(int(np.clip(v + rng.normal(0, 10), 0, 255)) for v in RGB[obj.colour])
    if obj.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=rgb)
    else:
        draw.polygon(_polygon(obj.shape, cx, cy, r, float(rng.uniform(-0.15, 0.15))), fill=rgb)


def _radius(obj: Obj, side: float, rng: np.random.Generator) -> float:
    return 0.5 * SIZE_FRACTION[obj.size] * side * float(rng.uniform(0.92, 1.08))


def scene_layout(scene: Scene, side: float, rng: np.random.Generator) -> list[tuple[Obj, float, float, float]]:
    """`(obj, cx, cy, r)` for every object of the scene: its centre and radius in pixels of a `side`-wide
    canvas, placed by the scene's kind (a grid position, a count, a relation) with jitter from `rng`."""
    if scene.kind == "single":
        obj = scene.objects[0]
        r = _radius(obj, side, rng)
        idx = POSITIONS.index(scene.position)
        row, col = divmod(idx, 3)
        cx = (col + 0.5) / 3 * side + rng.normal(0, 0.025 * side)
        cy = (row + 0.5) / 3 * side + rng.normal(0, 0.025 * side)
        margin = 1.1 * r
        return [(obj, float(np.clip(cx, margin, side - margin)), float(np.clip(cy, margin, side - margin)), r)]
    if scene.kind == "count":
        obj = scene.objects[0]
        placed: list[tuple[Obj, float, float, float]] = []
        for _ in range(scene.count):
            r = _radius(obj, side, rng)
            best = None
            for _attempt in range(60):
                cx, cy = rng.uniform(1.1 * r, side - 1.1 * r, size=2)
                gap = min((math.hypot(cx - x, cy - y) - r - rr for _, x, y, rr in placed), default=side)
                if best is None or gap > best[0]:
                    best = (gap, cx, cy)
                if gap > 0.05 * side:
                    break
            placed.append((obj, float(best[1]), float(best[2]), r))
        return placed
    a, b = scene.objects
    ra, rb = _radius(a, side, rng), _radius(b, side, rng)
    along = float(rng.uniform(0.42, 0.55)) * side  # separation along the relation's axis
    across = float(rng.normal(0, 0.05)) * side
    mid = side / 2 + rng.normal(0, 0.04 * side, size=2)
    horizontal = scene.relation in ("left of", "right of")
    sign = -1 if scene.relation in ("left of", "above") else 1
    dx, dy = (sign * along, across) if horizontal else (across, sign * along)
    ax, ay = mid[0] + dx / 2, mid[1] + dy / 2
    bx, by = mid[0] - dx / 2, mid[1] - dy / 2
    clip = lambda v, r: float(np.clip(v, 1.1 * r, side - 1.1 * r))  # noqa: E731
    return [(a, clip(ax, ra), clip(ay, ra), ra), (b, clip(bx, rb), clip(by, rb), rb)]


def render(scene: Scene | None, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """Draw `scene` as a `size`x`size` RGB image (None: the jittered background alone, no object)."""
    side = size * SUPERSAMPLE
    bg = tuple(int(v) for v in rng.integers(45, 85, size=3))
    img = Image.new("RGB", (side, side), bg)
    draw = ImageDraw.Draw(img)
    for obj, cx, cy, r in scene_layout(scene, side, rng) if scene is not None else []:
        draw_object(draw, obj, cx, cy, r, rng)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 4, size=(size, size, 3)).astype(np.int16)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
