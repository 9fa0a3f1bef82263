"""The tabletop world: table, coloured cubes, a bowl, a plate, a drawer cabinet, a push zone.

One MJCF model per (embodiment) holds every object; a reset draws which cubes take part,
their colours/poses and the container poses from a seed, and parks the unused cubes off the
table, so resets never recompile the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embodia.body.mjcf import VISUAL_ONLY, WORLD_COLLISION, RobotModel, fmt

CUBE_COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.1),
    "green": (0.15, 0.7, 0.2),
    "blue": (0.12, 0.3, 0.85),
    "yellow": (0.95, 0.82, 0.1),
}
CONTAINER_COLOURS: dict[str, tuple[float, float, float]] = {
    "white": (0.93, 0.93, 0.9),
    "gray": (0.55, 0.55, 0.57),
    "pink": (0.95, 0.55, 0.7),
    "purple": (0.55, 0.3, 0.7),
    "orange": (0.95, 0.5, 0.12),
}
CUBE_HALF = 0.02
BOWL_INNER_HALF = 0.065  # square bowl: inner half-width
BOWL_WALL = 0.008
BOWL_HEIGHT = 0.04
PLATE_RADIUS = 0.075
PLATE_HALF_THICK = 0.006
ZONE_HALF = 0.06
TABLE_TOP = 0.0

# Drawer cabinet (in its own frame: front face at x=0 facing -x, centred in y).
CAB_DEPTH, CAB_WIDTH, CAB_HEIGHT = 0.24, 0.2, 0.1
DRAWER_INNER = (0.2, 0.16, 0.06)  # inner length (x), width (y), wall height
DRAWER_TRAVEL = 0.16
DRAWER_FLOOR = 0.025  # drawer floor top above the table
HANDLE_OFFSET = 0.05  # handle bar distance in front of the drawer face
HANDLE_HEIGHT = 0.055  # above the table


@dataclass(frozen=True)
class ObjectInfo:
    """Static facts about one object in the model (pose and colour are per reset)."""

    name: str
    cls: str  # cube | bowl | plate | drawer
    size: tuple[float, ...]


@dataclass
class SceneLayout:
    """What one reset draws: the active cubes, colours and all poses."""

    cubes: dict[str, np.ndarray]  # name -> (x, y, yaw)
    bowl: np.ndarray  # (x, y, yaw)
    plate: np.ndarray  # (x, y)
    zone: np.ndarray  # (x, y)
    cabinet: np.ndarray  # (x_front, y)
    bowl_colour: str = "white"
    plate_colour: str = "gray"
    drawer_open: float = 0.0
    extras: dict = field(default_factory=dict)


def cube_name(colour: str) -> str:
    return f"{colour}_cube"


def _cube(colour: str, i: int) -> str:
    r, g, b = CUBE_COLOURS[colour]
    return f"""
<body name="{cube_name(colour)}" pos="{3 + 0.2 * i} 3 -0.73">
  <freejoint name="{cube_name(colour)}"/>
  <geom name="{cube_name(colour)}" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" mass="0.05"
        friction="1.2 0.01 0.001" condim="4" rgba="{r} {g} {b} 1" {WORLD_COLLISION}/>
</body>"""


def _bowl() -> str:
    h, w, t = BOWL_HEIGHT / 2, BOWL_INNER_HALF + BOWL_WALL, BOWL_WALL / 2
    o = BOWL_INNER_HALF + t
    walls = "".join(
        f'<geom name="bowl_wall{k}" type="box" size="{sx} {sy} {h}" pos="{px} {py} {h}" rgba="1 1 1 1" {WORLD_COLLISION}/>'
        for k, (sx, sy, px, py) in enumerate(
            [(t, w, o, 0), (t, w, -o, 0), (w, t, 0, o), (w, t, 0, -o)]
        )
    )
    return f"""
<body name="bowl" pos="3 -3 -0.73">
  <freejoint name="bowl"/>
  <inertial pos="0 0 0.01" mass="0.4" diaginertia="0.002 0.002 0.003"/>
  <geom name="bowl_base" type="box" size="{w} {w} 0.004" pos="0 0 0.004" rgba="1 1 1 1" {WORLD_COLLISION}/>
  {walls}
</body>"""


def _plate() -> str:
    return f"""
<body name="plate" pos="3.5 -3 -0.73">
  <freejoint name="plate"/>
  <geom name="plate" type="cylinder" size="{PLATE_RADIUS} {PLATE_HALF_THICK}" pos="0 0 {PLATE_HALF_THICK}"
        mass="0.3" rgba="1 1 1 1" {WORLD_COLLISION}/>
</body>"""


def _cabinet() -> str:
    d, w, ht = CAB_DEPTH / 2, CAB_WIDTH / 2, CAB_HEIGHT
    li, wi, hi = DRAWER_INNER
    wood = 'rgba="0.55 0.38 0.22 1"'
    front = 'rgba="0.7 0.5 0.3 1"'
    t = 0.006
    return f"""
<body name="cabinet" pos="0.6 0.3 0">
  <geom name="cab_top" type="box" size="{d} {w} {t}" pos="{d} 0 {ht - t}" {wood} {WORLD_COLLISION}/>
  <geom name="cab_left" type="box" size="{d} {t} {ht / 2}" pos="{d} {w - t} {ht / 2}" {wood} {WORLD_COLLISION}/>
  <geom name="cab_right" type="box" size="{d} {t} {ht / 2}" pos="{d} {-w + t} {ht / 2}" {wood} {WORLD_COLLISION}/>
  <geom name="cab_back" type="box" size="{t} {w} {ht / 2}" pos="{2 * d - t} 0 {ht / 2}" {wood} {WORLD_COLLISION}/>
  <geom name="cab_bottom" type="box" size="{d} {w} {t}" pos="{d} 0 {t}" {wood} {WORLD_COLLISION}/>
  <body name="drawer" pos="0 0 0">
    <joint name="drawer" type="slide" axis="-1 0 0" range="0 {DRAWER_TRAVEL}" damping="8" frictionloss="0.5" armature="0.2"/>
    <inertial pos="0.1 0 0.05" mass="0.5" diaginertia="0.005 0.005 0.005"/>
    <geom name="drawer_floor" type="box" size="{li / 2 + t} {wi / 2 + t} {t}" pos="{li / 2 + t} 0 {DRAWER_FLOOR - t}" {front} {WORLD_COLLISION}/>
    <geom name="drawer_front" type="box" size="{t} {w - 0.012} 0.04" pos="{t} 0 0.05" {front} {WORLD_COLLISION}/>
    <geom name="drawer_back" type="box" size="{t} {wi / 2 + t} {hi / 2}" pos="{li + t} 0 {DRAWER_FLOOR + hi / 2}" {front} {WORLD_COLLISION}/>
    <geom name="drawer_left" type="box" size="{li / 2 + t} {t} {hi / 2}" pos="{li / 2 + t} {wi / 2 + t} {DRAWER_FLOOR + hi / 2}" {front} {WORLD_COLLISION}/>
    <geom name="drawer_right" type="box" size="{li / 2 + t} {t} {hi / 2}" pos="{li / 2 + t} {-wi / 2 - t} {DRAWER_FLOOR + hi / 2}" {front} {WORLD_COLLISION}/>
    <geom name="handle_post_l" type="box" size="{HANDLE_OFFSET / 2} 0.005 0.005" pos="{-HANDLE_OFFSET / 2} 0.04 {HANDLE_HEIGHT}" rgba="0.2 0.2 0.2 1" {WORLD_COLLISION}/>
    <geom name="handle_post_r" type="box" size="{HANDLE_OFFSET / 2} 0.005 0.005" pos="{-HANDLE_OFFSET / 2} -0.04 {HANDLE_HEIGHT}" rgba="0.2 0.2 0.2 1" {WORLD_COLLISION}/>
    <geom name="handle" type="capsule" fromto="{-HANDLE_OFFSET} 0.045 {HANDLE_HEIGHT} {-HANDLE_OFFSET} -0.045 {HANDLE_HEIGHT}" size="0.006"
          friction="1.5 0.01 0.001" rgba="0.2 0.2 0.2 1" {WORLD_COLLISION}/>
  </body>
</body>"""


def compose_mjcf(robot: RobotModel) -> str:
    """The full scene model for one robot."""
    cubes = "".join(_cube(c, i) for i, c in enumerate(CUBE_COLOURS))
    return f"""
<mujoco model="embodia_tabletop">
  <compiler angle="radian" autolimits="true"/>
  <option timestep="0.002" cone="elliptic" impratio="10" integrator="implicitfast">
    <flag multiccd="enable"/>
  </option>
  <size memory="20M"/>
  <visual>
    <quality shadowsize="0"/>
    <global offwidth="640" offheight="480"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  <asset>
    <texture name="floor" type="2d" builtin="checker" rgb1="0.32 0.34 0.38" rgb2="0.26 0.28 0.3" width="64" height="64"/>
    <material name="floor" texture="floor" texrepeat="8 8"/>
  </asset>
  <worldbody>
    <light pos="0.4 -0.6 1.8" dir="0 0.3 -1" diffuse="0.5 0.5 0.5" castshadow="false"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" material="floor" {WORLD_COLLISION}/>
    <geom name="table" type="box" size="0.55 0.6 0.02" pos="0.45 0 -0.02" rgba="0.78 0.72 0.62 1"
          friction="1 0.01 0.001" {WORLD_COLLISION}/>
    <geom type="box" size="0.5 0.55 0.36" pos="0.45 0 -0.4" rgba="0.5 0.45 0.38 1" {VISUAL_ONLY}/>
    <body name="zone" mocap="true" pos="3 0 -0.74">
      <geom name="zone" type="box" size="{ZONE_HALF} {ZONE_HALF} 0.0005" rgba="0.95 0.95 0.95 1" {VISUAL_ONLY}/>
    </body>
    {robot.cameras_world}
    {robot.worldbody}
    {cubes}
    {_bowl()}
    {_plate()}
    {_cabinet()}
  </worldbody>
  <contact>
    <exclude body1="cabinet" body2="drawer"/>
  </contact>
  <actuator>
    {robot.actuators}
  </actuator>
  <sensor>
    {robot.sensors}
  </sensor>
</mujoco>"""


def object_catalogue() -> dict[str, ObjectInfo]:
    objs = {
        cube_name(c): ObjectInfo(cube_name(c), "cube", (CUBE_HALF,) * 3) for c in CUBE_COLOURS
    }
    objs["bowl"] = ObjectInfo("bowl", "bowl", (BOWL_INNER_HALF, BOWL_INNER_HALF, BOWL_HEIGHT))
    objs["plate"] = ObjectInfo("plate", "plate", (PLATE_RADIUS, PLATE_HALF_THICK))
    objs["drawer"] = ObjectInfo("drawer", "drawer", DRAWER_INNER)
    return objs


def cabinet_keepout(cabinet: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The table rectangle (lo, hi corners) the cabinet and its fully open drawer cover."""
    lo = np.asarray(cabinet[:2]) + [-DRAWER_TRAVEL - HANDLE_OFFSET - 0.02, -CAB_WIDTH / 2 - 0.02]
    hi = np.asarray(cabinet[:2]) + [CAB_DEPTH + 0.02, CAB_WIDTH / 2 + 0.02]
    return lo, hi


def distance_to_box(xy: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    return float(np.linalg.norm(xy - np.clip(xy, lo, hi)))


class _TablePacker:
    """Rejection-samples non-overlapping discs on the table, clear of the cabinet and the
    sweep of its drawer when fully open."""

    def __init__(self, rng: np.random.Generator, workspace: tuple[float, float, float, float],
                 cabinet: np.ndarray) -> None:
        self.rng, self.workspace = rng, workspace
        self.cab_lo, self.cab_hi = cabinet_keepout(cabinet)
        self.placed: list[tuple[np.ndarray, float]] = []  # (xy, radius)

    def draw(self, radius: float, margin: float = 0.0) -> np.ndarray | None:
        xmin, xmax, ymin, ymax = self.workspace
        for _ in range(200):
            xy = np.array([self.rng.uniform(xmin + margin, xmax - margin),
                           self.rng.uniform(ymin + margin, ymax - margin)])
            if distance_to_box(xy, self.cab_lo, self.cab_hi) <= radius:
                continue
            if all(np.linalg.norm(xy - p) > radius + r + 0.025 for p, r in self.placed):
                self.placed.append((xy, radius))
                return xy
        return None


def sample_layout(rng: np.random.Generator, workspace: tuple[float, float, float, float],
                  n_cubes: int | None = None, required: tuple[str, ...] = ()) -> SceneLayout:
    """Draw a collision-free layout inside `workspace` (xmin, xmax, ymin, ymax).

    `required` names cubes that must take part (e.g. the skill's target object).
    """
    colours = list(CUBE_COLOURS)
    if n_cubes is None:
        n_cubes = int(rng.integers(2, 5))
    n_cubes = max(n_cubes, len(required))
    req = [r.removesuffix("_cube") for r in required]
    unknown = [r for r in req if r not in CUBE_COLOURS]
    if unknown:
        raise ValueError(f"unknown cube colour(s) {unknown}; known: {colours}")
    rest = [c for c in colours if c not in req]
    chosen = req + list(rng.permutation(rest)[: n_cubes - len(req)])

    for _ in range(2000):
        cabinet = np.array([0.6 + rng.uniform(-0.02, 0.02), 0.3 + rng.uniform(-0.02, 0.02)])
        draw = _TablePacker(rng, workspace, cabinet).draw
        bowl = draw((BOWL_INNER_HALF + BOWL_WALL) * 1.3, margin=0.03)
        plate = draw(PLATE_RADIUS, margin=0.03)
        if bowl is None or plate is None:
            continue
        cubes = {}
        for c in chosen:
            xy = draw(CUBE_HALF * 1.5)
            if xy is None:
                break
            cubes[cube_name(c)] = np.array([xy[0], xy[1], rng.uniform(-np.pi / 4, np.pi / 4)])
        if len(cubes) != len(chosen):
            continue
        zone = draw(ZONE_HALF * 1.2)  # a free patch of table (push starts move it)
        if zone is None:
            continue
        cn = list(CONTAINER_COLOURS)
        bc, pc = rng.choice(len(cn), size=2, replace=False)
        return SceneLayout(
            cubes=cubes,
            bowl=np.array([bowl[0], bowl[1], rng.uniform(-0.3, 0.3)]),
            plate=plate,
            zone=zone,
            cabinet=cabinet,
            bowl_colour=cn[bc],
            plate_colour=cn[pc],
        )
    raise RuntimeError(f"could not place {n_cubes} cubes and the containers in workspace {workspace}")


__all__ = ["compose_mjcf", "sample_layout", "object_catalogue", "SceneLayout", "ObjectInfo", "fmt"]
