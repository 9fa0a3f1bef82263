"""The layered multi-rate runtime: reasoning (brain + monitor), perception and planning
(scene graph + cerebellum inference), control (chunk execution, interpolation, safety filter)
and the HAL (body drivers), run on a simulated lockstep clock or in real time."""

# What `embodia run`, `make demo` and benchmarks/long_horizon.py drive by default: the
# checkpoint measured best on multi-step instructions (docs/results.md, Runtime). Kept here,
# free of imports, so the CLI can name it without loading the runtime.
DEFAULT_AGENT_CHECKPOINT = "checkpoints/arm7_flow_ensemble_chain"
