"""What a study's config asks for, as jobs and paths: imported by the Snakefile, so it imports
neither torch nor optuna.
"""
