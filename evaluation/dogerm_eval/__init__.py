"""Reward-model evaluation for DogeRM: RewardBench, RewardBench 2, Auto-J and Best-of-N."""

__version__ = "0.1.0"
