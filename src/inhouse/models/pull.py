"""`models pull URL`: download a GGUF, only from hosts the admin allowed (air-gapped by default)."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

import httpx

from inhouse.config import ModelsSettings
from inhouse.errors import Forbidden, InvalidRequest
from inhouse.models.blobs import CHUNK_BYTES
from inhouse.models.names import name_from_filename
from inhouse.models.store import ModelRecord, ModelStore

MAX_REDIRECTS = 5
_TIMEOUT = httpx.Timeout(30.0, read=300.0)


def check_allowed(url: str, settings: ModelsSettings) -> str:
    """The URL's host, if `models pull` may download from it; Forbidden (air-gapped) otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise InvalidRequest(f"{url!r} is not an https:// URL", param="url")
    host = parts.hostname.lower().rstrip(".")
    if any(host == h or host.endswith("." + h) for h in settings.allow_pull_hosts):
        return host
    allowed = ", ".join(settings.allow_pull_hosts) or "none: air-gapped"
    hosts = '["' + host + '"]'
    raise Forbidden(
        f"downloading from {host} is refused: it is not in models.allow_pull_hosts "
        f"({allowed}). To allow it, set INHOUSE_MODELS__ALLOW_PULL_HOSTS='{hosts}' or put "
        f"`allow_pull_hosts = {hosts}` under [models] in the settings file; or copy the file "
        "in and `inhouse models import` it",
        code="air_gapped",
    )


def pull(store: ModelStore, settings: ModelsSettings, url: str, name: str | None) -> ModelRecord:
    """Download the GGUF at `url` (every redirect checked too) and import it as `name`."""
    check_allowed(url, settings)
    name = name or name_from_filename(urlsplit(url).path)
    try:
        with httpx.Client(timeout=_TIMEOUT, follow_redirects=False) as client:
            for _ in range(MAX_REDIRECTS + 1):
                with client.stream("GET", url) as response:
                    if response.is_redirect:
                        url = urljoin(url, response.headers["location"])
                        check_allowed(url, settings)
                        continue
                    if response.status_code != 200:
                        raise InvalidRequest(
                            f"download failed: HTTP {response.status_code} from {url}"
                        )
                    return store.import_stream(response.iter_bytes(CHUNK_BYTES), name, label=url)
    except httpx.HTTPError as exc:
        raise InvalidRequest(f"download failed: {exc}") from exc
    raise InvalidRequest(f"download failed: more than {MAX_REDIRECTS} redirects")
