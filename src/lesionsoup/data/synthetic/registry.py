"""The synthetic layouts by dataset: each writer module registers its dataset's when imported.

As the adapters fill ``lesionsoup.data.datasets.ADAPTERS``, the writer modules of
this package end with ``register(<dataset>, SyntheticLayout(...))`` and the
package imports them all, so importing ``lesionsoup.data.synthetic`` fills
``LAYOUTS``. The real adapters know nothing of it; a layout names a registered
adapter, whose official splits and annotation style the generator reads.
"""

from __future__ import annotations

from lesionsoup.data.datasets.registry import ADAPTERS
from lesionsoup.data.synthetic.layout import SyntheticLayout

#: Registered synthetic layouts by dataset name, in registration order.
LAYOUTS: dict[str, SyntheticLayout] = {}


def register(dataset: str, layout: SyntheticLayout) -> None:
    """Add ``layout`` as ``dataset``'s to ``LAYOUTS``; an unregistered or taken dataset, or a
    repeated or taken stream, fails."""
    if dataset not in ADAPTERS:
        raise ValueError(f"synthetic layout of unregistered dataset {dataset!r}")
    if dataset in LAYOUTS:
        raise ValueError(f"dataset {dataset!r} has a synthetic layout already")
    streams = layout.streams
    if len(set(streams)) < len(streams):
        raise ValueError(f"{dataset}: synthetic streams {streams} repeat")
    taken = {
        stream: other
        for other, registered in LAYOUTS.items()
        for stream in registered.streams
        if stream in streams
    }
    if taken:
        raise ValueError(f"{dataset}: synthetic streams {taken} are taken (stream: dataset)")
    LAYOUTS[dataset] = layout
