"""Model store: where GGUF files come from."""
