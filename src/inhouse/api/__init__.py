"""HTTP: the FastAPI app, its errors, auth and metrics; never imports llama_cpp."""
