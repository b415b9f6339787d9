"""Training data: augmenters for `[corpora.train]`."""
