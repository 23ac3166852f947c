"""Running a model (or an ensemble) on images: whole image, sliding window, flips."""
