"""Action heads behind the one Policy API: `loss(memory, actions, pad)` and `sample(memory)`
over normalized action chunks [B, H, D]."""
