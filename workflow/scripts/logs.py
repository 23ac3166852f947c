"""The rule's log for a workflow script: what `lesionsoup ... > {log} 2>&1` gives a command.

Log records, warnings, progress bars and a failure's traceback go to ``snakemake.log[0]``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

FORMAT = "%(asctime)s %(levelname)s %(message)s"


@contextlib.contextmanager
def logged(path: str) -> Iterator[logging.Logger]:
    """Send everything the body prints or logs to ``path``; yields the ``lesionsoup`` logger."""
    log = logging.getLogger("lesionsoup")
    with (
        open(path, "w", buffering=1) as stream,
        contextlib.redirect_stdout(stream),
        contextlib.redirect_stderr(stream),
    ):
        logging.basicConfig(level=logging.INFO, format=FORMAT, stream=stream, force=True)
        logging.captureWarnings(True)
        try:
            yield log
        except Exception:
            log.exception("failed")
            raise
