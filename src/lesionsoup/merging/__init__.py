"""Weight-space soups, SWA and ensembles of a combination's checkpoints."""
