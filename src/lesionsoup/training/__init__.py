"""Patch sampling, augmentation, losses, resumable training runs and their validation."""
