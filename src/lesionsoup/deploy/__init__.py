"""Predicting new photographs and exporting self-contained model folders."""
