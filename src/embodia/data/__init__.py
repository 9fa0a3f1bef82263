"""The data pillar: LeRobot-v3 datasets (write, read, validate), recording, training windows,
normalization statistics and the data pyramid (mixtures of tiers)."""
