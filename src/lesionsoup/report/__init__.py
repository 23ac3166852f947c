"""Figures and tables of a study."""
