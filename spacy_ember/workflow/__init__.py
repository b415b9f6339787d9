"""The `spacy project` workflow's library side: corpora, tuning, displaCy, reports, benchmarks."""
