"""The brain pillar: grounding, symbolic (PDDL) and LLM planning, feasibility, monitoring."""
