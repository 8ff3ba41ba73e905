"""One generation pipeline for every front-end: check -> prepare -> admit -> stream or collect.

The OpenAI and Ollama routes only translate their requests into `requests.py`'s types and
format the events they get back."""
