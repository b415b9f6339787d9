"""`python -m spacy_ember annotate`: entities for a whole corpus, resumable, locally or on
Ray Data. Input rows are read and checked the same way by both engines (inputs.py)."""
