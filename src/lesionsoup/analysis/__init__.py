"""Analyses of a study's data and models: annotation styles, linear mode connectivity."""
