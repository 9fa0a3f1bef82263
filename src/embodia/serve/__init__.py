"""Serving: the policy server robots call over the network (websocket + msgpack, compatible
with openpi-client), the robot-side remote cerebellum, and a link impairment proxy for tests.
The stack runs without this package; nothing below `serve` imports it."""
