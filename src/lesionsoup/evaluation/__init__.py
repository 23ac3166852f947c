"""Every model on every test set, as mergeable histograms."""
