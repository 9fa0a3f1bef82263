"""Meta-World's scripted experts (metaworld.policies) on the default evaluation seeds.

Printed beside every `embodia eval --suite metaworld` result: a learned policy cloned from
these experts is measured against what they themselves reach on the same episodes. Measured
once with the command below (no cameras: the experts read the state, not images).
"""

from __future__ import annotations

EXPERT_CEILING: dict = {
    "command": "OMP_NUM_THREADS=1 embodia eval --policy expert --suite metaworld --task mt10 "
               "--episodes 50 --seed-start 100000 --json",
    "seed_start": 100000,
    "episodes": 50,
    "tasks": {},
}
