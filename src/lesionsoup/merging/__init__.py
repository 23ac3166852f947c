"""Weight-space soups, SWA and prediction-space ensembles of a combination's checkpoints.

``averaging`` streams the weighted average of checkpoint files, ``batchnorm``
sets a merged model's BatchNorm statistics by policy, ``selection`` decides
which ingredients a soup keeps, ``soups`` runs a merge rule by name (the names
and defaults: ``lesionsoup.core.merge_rules``), ``candidates`` and
``held_out`` are what the stages read, and ``stage`` and ``ensembles`` are the
``lesionsoup merge`` and ``lesionsoup ensemble`` commands' work.
"""
