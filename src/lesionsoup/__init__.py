"""lesionsoup: cross-dataset retinal lesion segmentation studies.

One package per stage, in the order data flows; a stage imports only the
stages before it (``tests/test_architecture.py`` checks it).
"""

__version__ = "0.1.0"

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
