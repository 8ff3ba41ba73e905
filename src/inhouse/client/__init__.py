"""A small typed Python client for what the OpenAI client does not cover: who am I, users,
groups, keys, usage, savings, the audit trail and knowledge. Tables come back as `Table`
(a list of dicts with `.to_markdown()` and `.chart()`), failures as `InhouseAPIError`.

It talks HTTP only: nothing of the server is imported, so a notebook needs no server parts."""

from inhouse.client.aio import AsyncClient
from inhouse.client.calls import DEFAULT_BASE_URL
from inhouse.client.endpoints import KEEP
from inhouse.client.errors import InhouseAPIError
from inhouse.client.sync import Client
from inhouse.client.table import SVG, Table

__all__ = ["DEFAULT_BASE_URL", "KEEP", "SVG", "AsyncClient", "Client", "InhouseAPIError", "Table"]
