"""The frozen LM: loading, windowed extraction, attention band, taps, alignment, features."""
