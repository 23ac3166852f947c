"""Dataset adapters: each native layout read into a manifest.

Every adapter module registers its dataset when imported (``registry``); the one
import line below imports them all, so ``ADAPTERS`` is complete as soon as this
package is. A new dataset is its own module (``scan`` and
``register(DatasetAdapter(...))``) plus its name on that line, and its synthetic
stand-in for the demo data a module of ``lesionsoup.data.synthetic``.

``index_dataset`` (``index``) is loaded on first use: it needs pandas, which
reading the registry should not cost (the command line builds its help texts
from it on every start, and the workflow may read it while planning).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lesionsoup.data.datasets import ddr, fgadr, generic, idrid, maples, retles  # noqa: F401 (they register)
from lesionsoup.data.datasets.native import DatasetError
from lesionsoup.data.datasets.registry import (
    ADAPTERS,
    DatasetAdapter,
    default_styles,
    get_adapter,
    register,
)

if TYPE_CHECKING:
    from lesionsoup.data.datasets.index import index_dataset


def __getattr__(name: str) -> Any:
    if name == "index_dataset":
        from lesionsoup.data.datasets.index import index_dataset

        return index_dataset
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ADAPTERS",
    "DatasetAdapter",
    "DatasetError",
    "default_styles",
    "get_adapter",
    "index_dataset",
    "register",
]
