"""Rooms and corridors holding the embedded world's objects, seen through an egocentric RGB view.

A layout (`make_layout`, a function of its seed alone) is a grid of square rooms joined by one-cell
corridors along a random spanning tree (plus a few extra doors), each room holding objects of the world
(a colour-shape composition, all distinct). The agent stands on a cell facing one of four directions and
moves with three discrete actions: forward, turn left, turn right. Objects block.

What the agent sees is a world scene drawn by the world's renderer (`generators/world/render.py`), on a
canvas whose upper part is the wall ahead (its height tells how far it is): the nearest object in the
90-degree cone ahead (at most `VIEW_DEPTH` cells, line of sight through floor only) becomes a `single`
scene whose size says its distance (1 large, 2 medium, 3-4 small) and whose position says where it is
(bottom row near, top row far; left, centre, right by its bearing); two visible objects side by side
become a `relation` scene ("A to the left of B"). So every view is a scene of the world the world's CLIP
was trained on, and `info["caption"]` is its caption (the language oracle's input). Colours, sizes and
positions are jittered and noise is added on every render, as in the world itself.

An object is *visited* when the agent stands next to it facing it. Tasks: `explore` (no extrinsic
reward) and `reach` (reward 1 and the episode ends on visiting the named target, `info["mission"]`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image, ImageDraw

from generators.world.annotate import caption as world_caption
from generators.world.concepts import COLOURS, POSITIONS, SHAPES, Obj, Scene
from generators.world.render import SUPERSAMPLE, draw_object, scene_layout  # the world renderer's own layout and drawing

FORWARD, LEFT, RIGHT = 0, 1, 2
ACTIONS = ("forward", "turn left", "turn right")
DIRS = ((-1, 0), (0, 1), (1, 0), (0, -1))  # north, east, south, west as (row, col) steps
VIEW_DEPTH = 4
WALL, FLOOR = 1, 0
COMPOSITIONS = tuple((c, s) for c in COLOURS for s in SHAPES)
WALL_RGB = (118, 112, 104)
WALL_FRACTION = {1: 0.62, 2: 0.45, 3: 0.33, 4: 0.24}  # share of the view's height the wall ahead takes
BEYOND = 0.16


@dataclass
class Layout:
    """A map: `grid` (WALL/FLOOR), `room` (room index per cell, -1 in walls and corridors), the objects
    (cell → composition index into COMPOSITIONS), the start room and the target object."""

    rooms: tuple[int, int]
    room_size: int
    grid: np.ndarray
    room: np.ndarray
    objects: dict[tuple[int, int], int]
    start_room: int
    target: tuple[int, int]
    doors: list[tuple[int, int]] = field(default_factory=list)

    @property
    def n_rooms(self) -> int:
        return self.rooms[0] * self.rooms[1]

    def room_cells(self, k: int) -> list[tuple[int, int]]:
        return [tuple(int(v) for v in rc) for rc in np.argwhere(self.room == k)]

    def mission(self) -> str:
        colour, shape = COMPOSITIONS[self.objects[self.target]]
        return f"go to the {colour} {shape}"


def make_layout(seed: int, rooms: tuple[int, int] = (3, 3), room_size: int = 4, objects_per_room: int = 2,
                extra_doors: float = 0.25) -> Layout:
    """The layout of SEED: rooms on a grid, a random spanning tree of corridors (each other neighbour
    pair joined with probability EXTRA_DOORS), OBJECTS_PER_ROOM distinct world objects per room."""
    if objects_per_room * rooms[0] * rooms[1] > len(COMPOSITIONS):
        raise ValueError(f"{objects_per_room} objects in each of {rooms[0] * rooms[1]} rooms is more than the world's "
                         f"{len(COMPOSITIONS)} colour-shape compositions")
    if objects_per_room > room_size * room_size - 4:
        raise ValueError(f"a {room_size}x{room_size} room cannot hold {objects_per_room} objects and keep its doors free")
    rng = np.random.default_rng([seed, 19])
    ry, rx = rooms
    pitch = room_size + 2  # a room and its two walls; rooms share no wall: a corridor cell sits between them
    H, W = ry * pitch + (ry - 1), rx * pitch + (rx - 1)
    grid = np.full((H, W), WALL, np.int8)
    room = np.full((H, W), -1, np.int16)
    origin = {}
    for i in range(ry):
        for j in range(rx):
            r0, c0 = i * (pitch + 1) + 1, j * (pitch + 1) + 1
            origin[i * rx + j] = (r0, c0)
            grid[r0:r0 + room_size, c0:c0 + room_size] = FLOOR
            room[r0:r0 + room_size, c0:c0 + room_size] = i * rx + j
    # Corridors: a random spanning tree over neighbouring rooms (randomised Kruskal), then extra doors.
    pairs = [(i * rx + j, i * rx + j + 1) for i in range(ry) for j in range(rx - 1)]
    pairs += [(i * rx + j, (i + 1) * rx + j) for i in range(ry - 1) for j in range(rx)]
    order = rng.permutation(len(pairs))
    parent = list(range(ry * rx))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    joined = []
    for k in order:
        a, b = pairs[k]
        if find(a) != find(b):
            parent[find(a)] = find(b)
            joined.append((a, b))
        elif rng.random() < extra_doors:
            joined.append((a, b))
    doors: list[tuple[int, int]] = []
    mid = room_size // 2 - (0 if room_size % 2 else int(rng.integers(2)))
    for a, b in joined:
        (ra, ca), (rb, cb) = origin[a], origin[b]
        if ra == rb:  # side by side: wall, corridor cell, wall between them
            r = ra + mid
            cells = [(r, c) for c in range(ca + room_size, cb)]
        else:
            c = ca + mid
            cells = [(r, c) for r in range(ra + room_size, rb)]
        for cell in cells:
            grid[cell] = FLOOR
        doors.extend(cells)
    # Objects never stand on a cell next to a door (so no door is blocked) nor on the room's centre.
    near_door = {(r + dr, c + dc) for r, c in doors for dr, dc in DIRS}
    comps = rng.choice(len(COMPOSITIONS), size=objects_per_room * ry * rx, replace=False)
    objects: dict[tuple[int, int], int] = {}
    for k in range(ry * rx):
        r0, c0 = origin[k]
        centre = (r0 + room_size // 2, c0 + room_size // 2)
        free = [(r, c) for r in range(r0, r0 + room_size) for c in range(c0, c0 + room_size)
                if (r, c) not in near_door and (r, c) != centre]
        for idx in rng.choice(len(free), size=objects_per_room, replace=False):
            objects[free[int(idx)]] = int(comps[len(objects)])
    start_room = int(rng.integers(ry * rx))
    # The target: an object in the room farthest (in corridors) from the start.
    dist = _room_distances(start_room, joined, ry * rx)
    far = max(dist.values())
    candidates = sorted(cell for cell in objects if dist[int(room[cell])] == far)
    target = candidates[int(rng.integers(len(candidates)))]
    return Layout(rooms, room_size, grid, room, objects, start_room, target, doors)


def _room_distances(start: int, edges: list[tuple[int, int]], n: int) -> dict[int, int]:
    nbrs: dict[int, set[int]] = {k: set() for k in range(n)}
    for a, b in edges:
        nbrs[a].add(b)
        nbrs[b].add(a)
    dist, frontier = {start: 0}, [start]
    while frontier:
        nxt = []
        for a in frontier:
            for b in nbrs[a]:
                if b not in dist:
                    dist[b] = dist[a] + 1
                    nxt.append(b)
        frontier = nxt
    return dist


def _line_clear(grid: np.ndarray, a: tuple[int, int], b: tuple[int, int], objects: dict) -> bool:
    """No wall and no other object on the cells strictly between A and B (sampled along the segment)."""
    steps = 2 * max(abs(b[0] - a[0]), abs(b[1] - a[1]))
    for t in range(1, steps):
        r = round(a[0] + (b[0] - a[0]) * t / steps)
        c = round(a[1] + (b[1] - a[1]) * t / steps)
        if (r, c) in (a, b):
            continue
        if grid[r, c] == WALL or (r, c) in objects:
            return False
    return True


def visible(layout: Layout, pos: tuple[int, int], d: int) -> list[tuple[int, int, int]]:
    """Objects in the cone ahead: (cell distance ahead, lateral offset (+ right), composition), nearest first."""
    fr, fc = DIRS[d]
    rr, rc = DIRS[(d + 1) % 4]  # to the right
    seen = []
    for cell, comp in layout.objects.items():
        dr, dc = cell[0] - pos[0], cell[1] - pos[1]
        ahead, side = dr * fr + dc * fc, dr * rr + dc * rc
        if 1 <= ahead <= VIEW_DEPTH and abs(side) <= ahead and _line_clear(layout.grid, pos, cell, layout.objects):
            seen.append((ahead, side, comp))
    return sorted(seen, key=lambda s: (s[0], abs(s[1]), s[1]))


def _column(seen: tuple[int, int, int]) -> int:
    """0 left, 1 centre, 2 right: where an object (ahead, side, _) appears across the view."""
    bearing = seen[1] / seen[0]
    return 0 if bearing < -1 / 3 else 2 if bearing > 1 / 3 else 1


def view_scene(layout: Layout, pos: tuple[int, int], d: int) -> Scene | None:
    """The world scene the agent sees (None: no object in view)."""
    seen = visible(layout, pos, d)
    if not seen:
        return None
    ahead, side, comp = seen[0]
    other = next((s for s in seen[1:] if _column(s) != _column(seen[0])), None)
    if other is not None:  # two objects side by side: the world's relation scene, left one first
        (_, lc), (_, rc) = sorted([(side, comp), (other[1], other[2])])
        return Scene("relation", (Obj(*COMPOSITIONS[lc]), Obj(*COMPOSITIONS[rc])), relation="left of")
    size = "large" if ahead == 1 else "medium" if ahead == 2 else "small"
    row = 2 if ahead == 1 else 1 if ahead == 2 else 0
    colour, shape = COMPOSITIONS[comp]
    col = _column(seen[0])
    return Scene("single", (Obj(colour, shape, size),), position=POSITIONS[row * 3 + col])


def approach(layout: Layout, cell: tuple[int, int]) -> tuple[tuple[int, int], int]:
    """A free cell next to CELL and the direction from it that faces CELL."""
    for d, (dr, dc) in enumerate(DIRS):
        pos = (cell[0] - dr, cell[1] - dc)
        if layout.grid[pos] == FLOOR and pos not in layout.objects:
            return pos, d
    raise ValueError(f"no free cell next to {cell}")


def wall_distance(layout: Layout, pos: tuple[int, int], d: int) -> int:
    """Cells of floor straight ahead before a wall (objects do not count), capped at VIEW_DEPTH + 1."""
    r, c = pos
    for k in range(1, VIEW_DEPTH + 1):
        r, c = r + DIRS[d][0], c + DIRS[d][1]
        if layout.grid[r, c] == WALL:
            return k
    return VIEW_DEPTH + 1


def draw_view(scene: Scene | None, wall: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """The world renderer's scene (jittered colours, sizes, positions; noise) over the wall ahead."""
    side = size * SUPERSAMPLE
    bg = tuple(int(v) for v in rng.integers(45, 85, size=3))
    img = Image.new("RGB", (side, side), bg)
    draw = ImageDraw.Draw(img)
    wall_rgb = tuple(int(np.clip(v + rng.normal(0, 6), 0, 255)) for v in WALL_RGB)
    draw.rectangle([0, 0, side, int(side * WALL_FRACTION.get(wall, BEYOND))], fill=wall_rgb)
    if scene is not None:
        for obj, cx, cy, r in scene_layout(scene, side, rng):
            draw_object(draw, obj, cx, cy, r, rng)
    img = img.reduce(SUPERSAMPLE)  # box filter: the renderer's LANCZOS took 1.3 ms of this function's 1.6
    arr = np.asarray(img, dtype=np.int16) + rng.normal(0, 4, size=(size, size, 3)).astype(np.int16)
    return np.clip(arr, 0, 255).astype(np.uint8)


class RoomsEnv(gym.Env):
    """Rooms and corridors of world objects; observation: the egocentric RGB view (H, W, 3) uint8.

    `info` holds the agent's cell (`row`, `col`), direction and room, the view's `caption` (empty when no object is in
    view), `visited` (the composition index of the object just visited, or -1), `mission` and `success`.
    `layout_seed`: the map (None: the seed of the first `reset`); `new_layout_each_episode` draws a new map
    from the episode's random generator at every reset."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 8}

    def __init__(self, task: str = "explore", layout_seed: int | None = 0, rooms: tuple[int, int] = (3, 3),
                 room_size: int = 4, objects_per_room: int = 2, max_steps: int = 200, image_size: int = 64,
                 new_layout_each_episode: bool = False, render_mode: str | None = None) -> None:
        if task not in ("explore", "reach"):
            raise ValueError(f"task must be 'explore' or 'reach' (got {task!r})")
        self.task, self.layout_seed, self.rooms, self.room_size = task, layout_seed, tuple(rooms), room_size
        self.objects_per_room, self.max_steps, self.image_size = objects_per_room, max_steps, image_size
        self.new_layout_each_episode, self.render_mode = new_layout_each_episode, render_mode
        self.observation_space = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
        self.action_space = spaces.Discrete(len(ACTIONS))
        self.layout: Layout | None = None
        if layout_seed is not None:
            self.layout = self._make(layout_seed)
        self._obs: np.ndarray | None = None

    def _make(self, seed: int) -> Layout:
        return make_layout(seed, self.rooms, self.room_size, self.objects_per_room)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self.new_layout_each_episode:
            self.layout = self._make(int(self.np_random.integers(2**31)))
        elif self.layout is None:
            self.layout = self._make(seed if seed is not None else int(self.np_random.integers(2**31)))
        cells = [c for c in self.layout.room_cells(self.layout.start_room) if c not in self.layout.objects]
        self.pos = cells[int(self.np_random.integers(len(cells)))]
        self.dir = int(self.np_random.integers(4))
        self.t = 0
        return self._observe(), self._info(-1, False)

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be one of 0..{len(ACTIONS) - 1} ({', '.join(ACTIONS)}); got {action!r}")
        a = int(action)
        if a == LEFT:
            self.dir = (self.dir - 1) % 4
        elif a == RIGHT:
            self.dir = (self.dir + 1) % 4
        else:
            nxt = (self.pos[0] + DIRS[self.dir][0], self.pos[1] + DIRS[self.dir][1])
            if self.layout.grid[nxt] == FLOOR and nxt not in self.layout.objects:
                self.pos = nxt
        self.t += 1
        ahead = (self.pos[0] + DIRS[self.dir][0], self.pos[1] + DIRS[self.dir][1])
        visited = self.layout.objects.get(ahead, -1)
        success = ahead == self.layout.target
        reward = 1.0 if self.task == "reach" and success else 0.0
        terminated = self.task == "reach" and success
        truncated = self.t >= self.max_steps and not terminated
        return self._observe(), reward, terminated, truncated, self._info(visited, success)

    def _observe(self) -> np.ndarray:
        self.scene = view_scene(self.layout, self.pos, self.dir)
        self._obs = draw_view(self.scene, wall_distance(self.layout, self.pos, self.dir), self.np_random,
                              self.image_size)
        return self._obs

    def _info(self, visited: int, success: bool) -> dict:
        return {"row": self.pos[0], "col": self.pos[1], "dir": self.dir, "room": int(self.layout.room[self.pos]),
                "visited": visited, "success": success, "caption": world_caption(self.scene, 0) if self.scene is not None else "",
                "mission": self.layout.mission(), "t": self.t}

    def render(self):
        return self._obs

    def top_down(self, scale: int = 8) -> np.ndarray:
        """A map of the layout (walls dark, objects in their colour, the agent white), for plots."""
        from generators.world.concepts import RGB

        lay = self.layout
        img = np.where(lay.grid[..., None] == WALL, 40, 200).astype(np.uint8).repeat(3, -1)
        for cell, comp in lay.objects.items():
            img[cell] = RGB[COMPOSITIONS[comp][0]]
        img[self.pos] = (255, 255, 255)
        return img.repeat(scale, 0).repeat(scale, 1)


def register_env() -> None:
    """`gymnasium.make("synth2/Rooms-v0", ...)`."""
    if "synth2/Rooms-v0" not in gym.registry:
        gym.register("synth2/Rooms-v0", entry_point="consumers.exploration.env:RoomsEnv")

