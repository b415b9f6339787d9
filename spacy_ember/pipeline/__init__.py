"""The spaCy components: `causal_lm`, `ember_ner` and `linkner_router`."""
