"""Optuna studies whose trials are workflow jobs."""
