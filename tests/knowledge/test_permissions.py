"""Nobody retrieves what they may not read, and cannot even tell that it is there."""

from __future__ import annotations

from pathlib import Path

import pytest

from inhouse.auth.directory import Directory
from inhouse.auth.policy import Principal
from inhouse.embeddings.minilm import MiniLMEmbedder
from inhouse.knowledge.search import Hit, Mode
from inhouse.store.db import Database
from tests.knowledge.conftest import ACTOR, Knowledge, build, write

CANARY = "The merger with Globex closes on 14 March at a price of 41 dollars per share."
PUBLIC = {
    "handbook.md": "# Handbook\n\nThe office opens at 8 and closes at 18.\n\n"
    "Share prices of our suppliers are discussed in the weekly meeting.",
    "menu.txt": "The canteen serves soup on Mondays and fish on Fridays.",
}


def people(k: Knowledge) -> None:
    def setup(d: Directory) -> None:
        for group in ("legal", "staff"):
            d.add_group(group)
        d.add_user("lena", groups=["legal", "staff"])
        d.add_user("bob", groups=["staff"])
        d.add_user("root", role="admin")
        d.add_user("boss", role="admin", groups=["legal"])

    k.people(setup)


@pytest.fixture
def corpus(knowledge: Knowledge, tmp_path: Path) -> Knowledge:
    people(knowledge)
    knowledge.service.create(ACTOR, "contracts", "legal")
    knowledge.service.create(ACTOR, "public", "staff")
    knowledge.service.add(ACTOR, "contracts", write(tmp_path / "c", {"merger.txt": CANARY}))
    knowledge.service.add(ACTOR, "public", write(tmp_path / "p", PUBLIC))
    return knowledge


def ask(
    k: Knowledge, who: Principal, names: list[str] | None, mode: Mode = Mode.HYBRID
) -> list[Hit]:
    return k.service.search(who, CANARY, names, top_k=10, mode=mode)


def leaked(hits: list[Hit]) -> bool:
    return any(h.collection == "contracts" or "Globex" in h.text for h in hits)


def test_a_granted_member_finds_the_passage(corpus: Knowledge) -> None:
    hits = ask(corpus, corpus.key_principal("lena"), None)
    assert hits[0].collection == "contracts" and hits[0].text == CANARY


@pytest.mark.parametrize("mode", list(Mode))
def test_a_member_without_access_gets_what_they_would_if_it_did_not_exist(
    corpus: Knowledge, mode: Mode
) -> None:
    bob = corpus.key_principal("bob")
    everything = ask(corpus, bob, None, mode)
    named = ask(corpus, bob, ["contracts"], mode)
    assert not leaked(everything) and named == []
    assert ask(corpus, bob, ["no-such-collection"], mode) == []
    corpus.service.remove(ACTOR, "contracts")
    assert ask(corpus, bob, None, mode) == everything  # same count, same order, same scores


def test_a_key_scoped_to_other_collections_reads_nothing_else(corpus: Knowledge) -> None:
    scoped = corpus.key_principal("lena", collections=["public"])
    assert not leaked(ask(corpus, scoped, None))


def test_admins_read_only_what_their_groups_are_granted(corpus: Knowledge) -> None:
    root = corpus.key_principal("root")  # an admin in no group: manages, reads nothing
    assert ask(corpus, root, None) == [] and ask(corpus, root, ["contracts"]) == []
    assert ask(corpus, corpus.key_principal("boss"), None)[0].collection == "contracts"


def test_admins_read_all_when_the_setting_says_so(
    corpus: Knowledge, db: Database, embedder: MiniLMEmbedder
) -> None:
    opened = build(db, corpus.home, embedder, admins_read_all=True)
    assert ask(opened, corpus.key_principal("root"), None)[0].collection == "contracts"
