"""`python -m spacy_ember serve`: a web page and an OpenAI-compatible API that stream
generated text with its entities (EMBER), re-typed by the LLM where uncertain (LinkNER)."""
