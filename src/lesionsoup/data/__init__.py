"""Native datasets to manifests, splits and preprocessed caches."""
