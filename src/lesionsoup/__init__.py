"""lesionsoup: cross-dataset retinal lesion segmentation studies.

One package per stage, in the order data flows; a stage imports only the
stages before it (``tests/test_architecture.py`` checks it).
"""

import os

__version__ = "0.1.0"

# albumentations asks PyPI for a newer version when it is imported (a 2 s timeout, a warning in
# every job's log): the jobs of a study never use the network, even where there is one.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

#: The stage packages, in data-flow order: this tuple is the one statement of that order.
STAGES = (
    "core",
    "plan",
    "data",
    "inference",
    "training",
    "hpo",
    "merging",
    "evaluation",
    "analysis",
    "report",
    "deploy",
    "commands",
)
