"""The layered multi-rate runtime: reasoning (brain + monitor), perception and planning
(scene graph + cerebellum inference), control (chunk execution, interpolation, safety filter)
and the HAL (body drivers), run on a simulated lockstep clock or in real time."""
