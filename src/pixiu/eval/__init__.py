"""Evaluation: held-out scores of what the route's stages made (route.py: reward model and policy comparison)."""
