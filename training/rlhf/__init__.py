"""RLHF: PPO against a reward model (policy with value head, rollouts, rewards, PPO losses, evaluation)."""
