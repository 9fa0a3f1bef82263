"""Per-shape TorchScript traces for no-grad inference.

Why: at batch 1 on a CPU the policy's networks are small (a 16-token decoder pass, a few
convolutions at 48x48), so eager PyTorch spends more time dispatching each op than doing
its arithmetic, and a flow chunk runs the decoder eleven times. A trace replays the same
ops with far less per-op overhead and gives the same numbers. It shares the module's
parameters, so loading new weights keeps it valid; training and autograd never use it.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def tracing_applies(module: nn.Module) -> bool:
    """Inference without autograd, and not already inside someone else's trace, a
    `torch.compile`d region (which does its own fusing) or autocast (whose cached low-precision
    weights a trace would freeze in as constants)."""
    if torch.compiler.is_compiling() or any(torch.is_autocast_enabled(d) for d in ("cpu", "cuda")):
        return False
    return not (module.training or torch.is_grad_enabled() or torch.jit.is_tracing())


class _Method(nn.Module):
    """`owner.<name>(*tensors)` as a module whose forward can be traced; `owner` is a
    registered submodule, so its parameters stay parameters (shared), not constants."""

    def __init__(self, owner: nn.Module, name: str) -> None:
        super().__init__()
        self.owner = owner
        self.name = name

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return getattr(self.owner, self.name)(*args)


class TraceCache:
    """Traces of one method of one module, keyed by the shapes, dtypes and devices of its
    tensor arguments. Pickling or deep-copying gives an empty cache (traces are rebuilt)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._traces: dict[tuple, torch.jit.ScriptModule] = {}

    def __getstate__(self) -> dict:
        return {"name": self.name, "_traces": {}}

    def __call__(self, owner: nn.Module, *args: torch.Tensor) -> torch.Tensor:
        key = tuple((tuple(a.shape), a.dtype, a.device) for a in args)
        fn = self._traces.get(key)
        if fn is None:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tracer chatter about Python constants
                fn = torch.jit.trace(_Method(owner, self.name), tuple(a.clone() for a in args), check_trace=False)
            self._traces[key] = fn
        return fn(*args)
