"""NER while the LM generates: settings, prompts and stops, streaming, incremental decoding."""
