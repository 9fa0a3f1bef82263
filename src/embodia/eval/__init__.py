"""Evaluation: seeded rollouts, success statistics, videos and reports."""
