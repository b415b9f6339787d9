"""EMBER's NER over LM features: probes, candidate spans, losses, decoding, entities on the Doc."""
