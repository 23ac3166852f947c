"""The demo data: synthetic photographs written in every registered dataset's native layout.

Nothing of the real pipeline imports this package; it imports the adapters (for
their folder names, splits and annotation styles) and imitates what they read.
``fundus`` renders photographs with their true lesion masks, ``annotation_style``
turns those into a grader's masks, ``generator`` runs it all, and one writer
module per dataset saves its native tree (``layout``). Every writer module
registers its layout when imported (``registry``); the import line below imports
them all, so ``LAYOUTS`` is complete as soon as this package is.
"""

from __future__ import annotations

from lesionsoup.data.synthetic import ddr, fgadr, idrid, maples, retles  # noqa: F401 (they register)
from lesionsoup.data.synthetic.registry import LAYOUTS, register

__all__ = ["LAYOUTS", "register"]
