"""/v1/knowledge: the knowledge collections over HTTP, for apps (same rules as the CLI)."""

from inhouse.api.knowledge.routes import router

__all__ = ["router"]
