"""The four layers, their declared rates, and the runtime's configuration.

Rates follow the reference architecture (DESIGN.md): reasoning 1-5 Hz, perception and
planning at the policy's own rate (here the cerebellum's 10 Hz action rate: an observation
belongs to an action slot), control 100-1000 Hz, and the HAL receiving a setpoint every
control tick (inside it, the drives' PD servos run at the physics rate, 500 Hz in MuJoCo). A rate outside its band is a configuration error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from embodia.runtime.control import ControlConfig
from embodia.runtime.safety import SafetyConfig


@dataclass(frozen=True)
class LayerSpec:
    name: str
    rate_hz: float
    band: tuple[float, float]
    does: str

    def __post_init__(self) -> None:
        lo, hi = self.band
        if not lo <= self.rate_hz <= hi:
            raise ValueError(f"layer {self.name!r} runs at {lo:g}-{hi:g} Hz, got {self.rate_hz:g}")

    def to_dict(self) -> dict:
        return {"name": self.name, "rate_hz": self.rate_hz, "band_hz": list(self.band), "does": self.does}


@dataclass(frozen=True)
class RuntimeConfig:
    control: ControlConfig = field(default_factory=ControlConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    reasoning_hz: float = 5.0
    rtc: bool = True  # flow head: continue each chunk from the committed actions
    sim_latency_s: float = 0.0  # lockstep clock: simulated inference latency
    latency_guess_s: float = 0.05  # real time: assumed inference latency until measured
    video_hz: float = 10.0
    control_cpu: int | None = -1  # real time: core for the control process (-1: the last; None: any)
    rt_priority: bool = True  # real time: SCHED_FIFO for the control process if permitted
    spin_s: float = 0.0003  # real time: the control loop sleeps until this long before a tick, then spins
    switch_interval_s: float = 0.001  # real time: sys.setswitchinterval in the main process


def declare_layers(cfg: RuntimeConfig, policy_hz: float, hal_hz: float) -> list[LayerSpec]:
    return [
        LayerSpec("reasoning", cfg.reasoning_hz, (1.0, 5.0),
                  "brain plan + monitor: step success, retry, replan"),
        LayerSpec("perception", policy_hz, (1.0, 60.0),
                  "observation, scene graph, cerebellum chunk requests (async)"),
        LayerSpec("control", cfg.control.rate_hz, (100.0, 1000.0),
                  "chunk execution, interpolation, safety filter, watchdog, e-stop"),
        LayerSpec("hal", hal_hz, (100.0, 10_000.0),
                  "drivers: joint position servos (PD), grippers, encoders, cameras"),
    ]
