"""The HTTP API: thin FastAPI routes over `api.queries` and the stream hub."""
