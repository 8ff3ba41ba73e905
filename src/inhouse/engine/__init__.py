"""The model runtime: continuous batching over llama.cpp; no HTTP, no SQL."""
