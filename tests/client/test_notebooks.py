"""The notebooks in examples/ run top to bottom with nbclient against a served instance
(FakeRunner as model "fake", the real embedder), with no manual step and no error."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

from tests.client.conftest import Site, chat, need_embedder

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NOTEBOOKS = sorted(p.name for p in EXAMPLES.glob("*.ipynb"))


def run(name: str, site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Execute examples/`name` in a fresh python3 kernel; the executed cells' outputs."""
    for variable, value in {
        "INHOUSE_BASE_URL": site.url,
        "INHOUSE_API_KEY": site.admin_key,
        "INHOUSE_MODEL": "fake",
    }.items():
        monkeypatch.setenv(variable, value)  # the kernel inherits this process's environment
    notebook = nbformat.read(EXAMPLES / name, as_version=4)  # type: ignore[no-untyped-call]
    # no kernel spec directory: ipykernel's own python3 spec, which runs this interpreter
    # whatever specs are (or are not) installed for the user or the system
    manager = KernelManager(
        kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[])
    )
    assert manager.kernel_spec is not None and manager.kernel_spec.argv[0] == sys.executable
    client = NotebookClient(
        notebook,
        km=manager,
        timeout=120,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()
    return [output for cell in notebook.cells for output in cell.get("outputs", [])]


def shown(outputs: list[Any], kind: str) -> str:
    """Everything the outputs showed as `kind` ("text", "image/svg+xml", "text/markdown")."""
    if kind == "text":
        return "".join(o.get("text", "") for o in outputs if o["output_type"] == "stream")
    return "".join(o.get("data", {}).get(kind, "") for o in outputs)


def test_every_notebook_is_committed_without_outputs() -> None:
    assert NOTEBOOKS == ["01-getting-started.ipynb", "02-usage-and-savings.ipynb", "03-rag.ipynb"]
    for name in NOTEBOOKS:
        notebook = nbformat.read(EXAMPLES / name, as_version=4)  # type: ignore[no-untyped-call]
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert (cell.outputs, cell.execution_count) == ([], None), name


def test_getting_started_signs_in_chats_and_creates_then_revokes_a_key(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = run("01-getting-started.ipynb", site, tmp_path, monkeypatch)
    text = shown(outputs, "text")
    assert "Signed in as admin (admin)" in text and "'fake'" in text
    assert "secret (shown once): ih-" in text and "| notebook demo |" in shown(
        outputs, "text/markdown"
    )
    assert "401 revoked_api_key - This API key has been revoked." in text


def test_usage_and_savings_shows_tables_and_charts(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chat(site.served, site.member_key)  # traffic to report on
    outputs = run("02-usage-and-savings.ipynb", site, tmp_path, monkeypatch)
    markdown, svg = shown(outputs, "text/markdown"), shown(outputs, "image/svg+xml")
    assert "| mia |" in markdown and "| gpt-4o |" in markdown and "| fake |" in markdown
    assert svg.count("<svg") == 3 and "This traffic at each API" in svg
    assert "Prices 2025.06" in shown(outputs, "text")


def test_rag_uploads_searches_and_answers_with_citations(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    need_embedder()
    outputs = run("03-rag.ipynb", site, tmp_path, monkeypatch)
    text, markdown = shown(outputs, "text"), shown(outputs, "text/markdown")
    assert "expenses.md indexed" in text and "holidays.md indexed" in text
    assert "| expenses.md |" in markdown  # the search's best hit, then the answer's citations
    assert "30 days of paid leave" in markdown
    assert "notebook-handbook" not in [c["name"] for c in site_collections(site)]


def site_collections(site: Site) -> list[dict[str, Any]]:
    from inhouse.client import Client

    with Client(site.url, site.admin_key) as admin:
        return list(admin.collections())
