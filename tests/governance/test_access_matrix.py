"""Two users with canary data: every admin route, every ID position, across users and roles.

A member gets 403 (the role forbids) or 404 (not theirs), never the other's data; an auditor
reads but changes nothing; a key scoped to models sees and uses only those; and every route
declares exactly one permission, the public ones being a known, short list.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from inhouse.api.app import create_app
from inhouse.api.guard import Guard
from inhouse.api.web.access import PageGuard
from inhouse.models.resolver import SingleModel
from tests.conftest import Served, fake_engine, make_settings, serve_fake
from tests.fakes import FakeRunner
from tests.governance.helpers import (
    admin,
    bearer,
    store_snapshot,
    store_url,
    usage_rows,
    wait_for_usage_rows,
)

HI = [{"role": "user", "content": "Hi"}]
FORBIDDEN_OR_NOT_FOUND = {403, 404}


@dataclass(frozen=True)
class Person:
    """A user with canary data: a key, a group with a grant, and usage of their own."""

    name: str
    role: str
    key: str  # the secret
    key_id: str
    key_name: str
    group: str
    collection: str
    widget: str  # the public id of a widget made for this person's model (by the admin)

    @property
    def canary(self) -> str:
        """In every name of this person's data (key name, group, collection)."""
        return f"canary-{self.name}"

    def client(self, served: Served) -> httpx.Client:
        return httpx.Client(base_url=served.base_url, headers=bearer(self.key), timeout=30)


@dataclass(frozen=True)
class World:
    served: Served
    alice: Person
    bob: Person
    carol: Person  # the auditor


def _person(served: Served, name: str, role: str) -> Person:
    group, collection = f"canary-{name}-team", f"canary-{name}"
    key_name = f"canary-{name}-{secrets.token_hex(4)}"
    with admin(served) as client:
        assert client.post("/admin/groups", json={"name": group}).status_code == 201
        assert client.put(f"/admin/groups/{group}/collections/{collection}").status_code == 200
        reply = client.post("/admin/users", json={"name": name, "role": role, "groups": [group]})
        assert reply.status_code == 201, reply.text
        widget = client.post("/admin/widgets", json=widget_body(name))
        assert widget.status_code == 201, widget.text
        reply = client.post("/admin/keys", json={"user": name, "name": key_name})
        assert reply.status_code == 201, reply.text
    person = Person(
        name,
        role,
        reply.json()["key"],
        reply.json()["id"],
        key_name,
        group,
        collection,
        widget.json()["id"],
    )
    chat = httpx.post(
        served.v1 + "/chat/completions",
        headers=bearer(person.key),
        json={"model": "fake", "messages": HI, "max_tokens": 2},
        timeout=30,
    )
    assert chat.status_code == 200, chat.text
    return person


def widget_body(name: str) -> dict[str, Any]:
    return {
        "name": f"canary-{name}-widget",
        "model": "fake",
        "origins": ["https://example.com"],
        "requests_per_minute": 10,
    }


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """One populated server per database, shared by this module's tests: each checks that
    its attempts changed nothing, and the few that add a key add it for alice only."""
    tmp = tmp_path_factory.mktemp("access")
    with (
        store_url(request.param, tmp) as url,
        serve_fake(tmp / "home", FakeRunner(), store_url=url) as served,
    ):
        people = [_person(served, n, r) for n, r in [("alice", "member"), ("bob", "member")]]
        carol = _person(served, "carol", "auditor")
        wait_for_usage_rows(served, 3)
        yield World(served, people[0], people[1], carol)


# ----- every admin route, as someone else ----------------------------------------------------


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every /admin route the app serves."""
    return sorted(
        (method, route.path)
        for route in api_routes(app)
        if route.path.startswith("/admin")
        for method in route.methods
    )


def fill(path: str, victim: Person) -> str:
    """`path` with each parameter naming the victim's user, group, key or collection."""
    values = {
        "name": victim.group if path.startswith("/admin/groups") else victim.name,
        "user": victim.name,
        "collection": victim.collection,
        "public_id": victim.widget if path.startswith("/admin/widgets") else victim.key_id,
    }

    def value(match: re.Match[str]) -> str:
        if match.group(1) not in values:
            pytest.fail(f"{path}: no victim's value for {{{match.group(1)}}}; add one to fill()")
        return values[match.group(1)]

    return re.sub(r"\{(\w+)(?::\w+)?\}", value, path)


def body_for(method: str, path: str, victim: Person) -> dict[str, Any] | None:
    """A body that is valid, so that only the permission check can stop the request."""
    bodies: dict[tuple[str, str], dict[str, Any]] = {
        ("POST", "/admin/login"): {"name": victim.name, "password": "not the password"},
        ("POST", "/admin/users"): {"name": "mallory", "role": "admin"},
        ("PATCH", "/admin/users/{name}"): {"role": "member", "disabled": True},
        ("POST", "/admin/groups"): {"name": "mallory-team"},
        ("PATCH", "/admin/groups/{name}"): {"tokens_per_day": 1},
        ("POST", "/admin/keys"): {"user": victim.name, "name": "planted"},
        ("PATCH", "/admin/keys/{public_id}"): {"tokens_per_day": 1},
        ("POST", "/admin/widgets"): widget_body("mallory"),
        ("PATCH", "/admin/widgets/{public_id}"): {"requests_per_minute": 1},
    }
    return bodies.get((method, path))


def sweep(world: World, caller: Person, victim: Person) -> dict[tuple[str, str], httpx.Response]:
    """Every admin route with every method, aimed at `victim`'s data, called by `caller`."""
    replies = {}
    with caller.client(world.served) as client:
        for method, path in admin_routes(world.served.app):
            body = body_for(method, path, victim)
            replies[method, path] = client.request(method, fill(path, victim), json=body)
    return replies


# routes that act only on the caller (or on no one yet): a member may call them
OWN = {
    ("GET", "/admin/me"),
    ("GET", "/admin/keys"),
    ("GET", "/admin/usage"),
    ("POST", "/admin/logout"),
}


def test_a_member_gets_403_or_404_on_every_admin_route_aimed_at_another(world: World) -> None:
    served, alice, bob = world.served, world.alice, world.bob
    before = store_snapshot(served)
    replies = sweep(world, alice, bob)
    assert len(replies) >= 25, sorted(replies)  # the sweep really went over the admin API

    for (method, path), reply in replies.items():
        where = f"{method} {path} -> {reply.status_code} {reply.text[:200]}"
        assert bob.canary not in reply.text, where
        assert bob.key not in reply.text, where
        if (method, path) in OWN:
            assert reply.status_code == 200, where
        elif (method, path) == ("POST", "/admin/login"):
            assert reply.status_code == 401, where
        else:
            assert reply.status_code in FORBIDDEN_OR_NOT_FOUND, where
    assert store_snapshot(served) == before
    assert httpx.get(served.v1 + "/models", headers=bearer(bob.key)).status_code == 200


def test_an_auditor_reads_everything_and_changes_nothing(world: World) -> None:
    served, carol, bob = world.served, world.carol, world.bob
    before = store_snapshot(served)
    replies = sweep(world, carol, bob)

    for (method, path), reply in replies.items():
        where = f"{method} {path} -> {reply.status_code} {reply.text[:200]}"
        assert bob.key not in reply.text, where  # a key's secret is never shown, to anyone
        if method == "GET" or (method, path) == ("POST", "/admin/logout"):
            assert reply.status_code == 200, where
        elif (method, path) == ("POST", "/admin/login"):
            assert reply.status_code == 401, where
        else:  # the auditor may see bob and his keys, so the answer is "forbidden"
            assert reply.status_code == 403, where
    assert store_snapshot(served) == before

    users = replies["GET", "/admin/users"].json()["users"]
    assert {"alice", "bob", "carol"} <= {u["name"] for u in users}
    usage = replies["GET", "/admin/usage"].json()["rows"]
    assert {"alice", "bob", "carol"} <= {r["label"] for r in usage}
    assert replies["GET", "/admin/audit/verify"].json()["ok"] is True


# ----- each ID position: path, query, body ---------------------------------------------------


def test_another_users_key_by_path_is_not_found(world: World) -> None:
    served, alice, bob = world.served, world.alice, world.bob
    before = store_snapshot(served)
    with alice.client(served) as client:
        for method in ("GET", "DELETE", "PATCH"):
            body = {"tokens_per_day": 1} if method == "PATCH" else None
            reply = client.request(method, f"/admin/keys/{bob.key_id}", json=body)
            assert reply.status_code in FORBIDDEN_OR_NOT_FOUND, (method, reply.text)
            assert bob.canary not in reply.text
        own = client.get(f"/admin/keys/{alice.key_id}")
        assert own.status_code == 200 and own.json()["name"] == alice.key_name
    assert store_snapshot(served) == before
    assert httpx.get(served.v1 + "/models", headers=bearer(bob.key)).status_code == 200


def test_another_user_by_query_is_not_found_and_lists_hold_only_ones_own(world: World) -> None:
    served, alice, bob = world.served, world.alice, world.bob
    with alice.client(served) as client:
        reply = client.get("/admin/keys", params={"user": "bob"})
        assert reply.status_code in FORBIDDEN_OR_NOT_FOUND and bob.canary not in reply.text
        keys = client.get("/admin/keys").json()["keys"]
        assert keys and {k["user"] for k in keys} == {"alice"}
        assert alice.key_id in {k["id"] for k in keys}

        by = {
            grouping: client.get("/admin/usage", params={"by": grouping})
            for grouping in ("user", "group", "key", "model", "day")
        }
    for grouping, reply in by.items():
        assert reply.status_code == 200, (grouping, reply.text)
        assert bob.canary not in reply.text and bob.key_id not in reply.text, grouping
        assert "bob" not in [row["label"] for row in reply.json()["rows"]], grouping
    assert [row["label"] for row in by["user"].json()["rows"]] == ["alice"]
    assert [row["label"] for row in by["group"].json()["rows"]] == [alice.group]
    assert all(row["label"].startswith("key_") for row in by["key"].json()["rows"])
    assert alice.key_id in by["key"].text
    alices_requests = sum(1 for row in usage_rows(served) if row["user_id"] == _user_id(world))
    assert sum(row["requests"] for row in by["model"].json()["rows"]) == alices_requests


def _user_id(world: World) -> int:
    from sqlalchemy import select

    from inhouse.store.tables import User

    with world.served.app.state.inhouse.db.read() as session:
        found = session.scalar(select(User.id).where(User.name == world.alice.name))
        assert found is not None
        return found


def test_a_key_for_another_user_by_body_is_refused_and_none_is_made(world: World) -> None:
    served, alice, bob = world.served, world.alice, world.bob
    before = store_snapshot(served)
    with alice.client(served) as client:
        reply = client.post("/admin/keys", json={"user": "bob", "name": "planted"})
        assert reply.status_code in FORBIDDEN_OR_NOT_FOUND, reply.text
        assert "key" not in reply.json() and bob.canary not in reply.text
    assert store_snapshot(served) == before
    with admin(served) as client:
        bobs = client.get("/admin/keys", params={"user": "bob"}).json()["keys"]
    assert [k["id"] for k in bobs] == [bob.key_id]


def test_a_member_creates_keys_for_herself_only(world: World) -> None:
    served, alice = world.served, world.alice
    with alice.client(served) as client:
        for body in ({"name": "second"}, {"name": "third", "user": "alice"}):
            reply = client.post("/admin/keys", json=body)
            assert reply.status_code == 201, reply.text
            assert reply.json()["user"] == "alice"
    me = httpx.get(served.base_url + "/admin/me", headers=bearer(reply.json()["key"])).json()
    assert me["user"] == "alice" and me["collections"] == [alice.collection]


def test_a_keys_collection_scope_narrows_and_never_grants(world: World) -> None:
    """A member names another's collection in her new key's scope: it does not become hers
    (a fresh member, so that the others' key lists do not echo the name)."""
    served, bob = world.served, world.bob
    with admin(served) as client:
        client.post("/admin/users", json={"name": "dora"})
        key = client.post("/admin/keys", json={"user": "dora"}).json()["key"]
    with httpx.Client(base_url=served.base_url, headers=bearer(key), timeout=30) as dora:
        scoped = dora.post("/admin/keys", json={"collections": [bob.collection]})
    assert scoped.status_code in {201, *FORBIDDEN_OR_NOT_FOUND}, scoped.text
    if scoped.status_code == 201:
        me = httpx.get(served.base_url + "/admin/me", headers=bearer(scoped.json()["key"]))
        assert me.json()["user"] == "dora"
        assert me.json()["collections"] == []


def test_a_member_may_not_raise_her_role_or_lift_her_quota(world: World) -> None:
    served, alice = world.served, world.alice
    before = store_snapshot(served)
    attempts = [
        ("PATCH", "/admin/users/alice", {"role": "admin"}),
        ("PATCH", "/admin/users/alice", {"tokens_per_day": None, "disabled": False}),
        ("POST", "/admin/users", {"name": "alice2", "role": "admin"}),
        ("PUT", f"/admin/groups/{world.bob.group}/members/alice", None),
        ("PUT", f"/admin/groups/{alice.group}/collections/{world.bob.collection}", None),
    ]
    with alice.client(served) as client:
        for method, path, body in attempts:
            reply = client.request(method, path, json=body)
            assert reply.status_code == 403, (method, path, reply.text)
            assert reply.json()["error"]["type"] == "permission_error"
        me = client.get("/admin/me").json()
    assert me["role"] == "member" and "directory.write" not in me["permissions"]
    assert store_snapshot(served) == before


# ----- keys scoped to models -----------------------------------------------------------------


def _scoped_key(world: World) -> str:
    with admin(world.served) as client:
        reply = client.post("/admin/keys", json={"user": "alice", "models": ["other"]})
        assert reply.status_code == 201, reply.text
        secret: str = reply.json()["key"]
        return secret


def test_a_key_scoped_to_another_model_can_neither_use_nor_see_fake(world: World) -> None:
    served = world.served
    key = _scoped_key(world)
    rows = len(usage_rows(served))
    with httpx.Client(base_url=served.base_url, headers=bearer(key), timeout=30) as client:
        for path, body in [
            ("/v1/chat/completions", {"model": "fake", "messages": HI, "max_tokens": 2}),
            ("/v1/completions", {"model": "fake", "prompt": "Hi", "max_tokens": 2}),
            ("/api/chat", {"model": "fake", "messages": HI, "stream": False}),
            ("/api/generate", {"model": "fake", "prompt": "Hi", "stream": False}),
        ]:
            reply = client.post(path, json=body)
            assert reply.status_code == 403, (path, reply.text)
        listed = client.get("/v1/models")
        assert listed.status_code == 200
        assert "fake" not in [m["id"] for m in listed.json()["data"]]
        assert client.get("/v1/models/fake").status_code == 404
        tags = client.get("/api/tags").json()["models"]
        assert not [m for m in tags if m["name"].removesuffix(":latest") == "fake"]
        assert client.post("/api/show", json={"model": "fake"}).status_code == 404
    assert len(usage_rows(served)) == rows


def test_a_key_scoped_to_another_model_does_not_see_fake_among_the_running(world: World) -> None:
    key = _scoped_key(world)
    with admin(world.served) as client:
        everyone = client.get("/api/ps").json()["models"]
    assert "fake" in _names(everyone)  # loaded at start: the scoped list is not empty by chance
    running = httpx.get(world.served.base_url + "/api/ps", headers=bearer(key))
    assert running.status_code == 200
    assert "fake" not in _names(running.json()["models"]), running.text


def _names(models: list[dict[str, Any]]) -> list[str]:
    return [m["name"].removesuffix(":latest") for m in models]


# ----- every route declares its permission ---------------------------------------------------

# FastAPI's own pages (plain Starlette routes, no dependencies): the API's schema and its docs
FRAMEWORK_PUBLIC = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
# the web app's own scripts and stylesheets (files of the package, nothing from the store)
STATIC_FILES = {"/static"}
# the routes anyone may call without credentials; a new one must be added here consciously
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("GET", "/api/version"),
    ("POST", "/admin/login"),
    ("GET", "/login"),  # the sign-in page and the branding it shows
    ("GET", "/brand.css"),
    ("GET", "/brand/logo"),
    # the embeddable widget: its own token and frame ticket are checked inside (widgets/)
    ("GET", "/widget/{public_id}.js"),
    ("GET", "/widget/{public_id}/frame"),
    ("GET", "/widget/{public_id}/style.css"),
    ("POST", "/widget/{public_id}/chat"),
}


def all_routes(app: FastAPI) -> list[Any]:
    """Every route as served; an API route comes with the dependencies of its routers."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before lazy router inclusion: app.routes are the routes
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def api_routes(app: FastAPI) -> list[Any]:
    return [r for r in all_routes(app) if isinstance(getattr(r, "original_route", r), APIRoute)]


def guards_of(dependant: Any) -> list[Guard | PageGuard]:
    found = []
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, (Guard, PageGuard)):
            found.append(dependency.call)
        found += guards_of(dependency)
    return found


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    """The app as built, not started: its routes are all this needs."""
    built = create_app(
        make_settings(tmp_path / "home"),
        resolver=SingleModel("fake", Path("/dev/null")),
        build=lambda spec: fake_engine(FakeRunner()),
    )
    yield built
    built.state.inhouse.governance.close()
    built.state.inhouse.db.close()


def test_every_route_declares_exactly_one_permission(app: FastAPI) -> None:
    routes = api_routes(app)
    assert len(routes) > 30
    declared = {}
    for route in routes:
        for method in route.methods:
            declared[method, route.path] = [str(g.permission) for g in guards_of(route.dependant)]
    not_one = {route: guards for route, guards in declared.items() if len(guards) != 1}
    assert not_one == {}, "each route must declare exactly one guard(Permission.X)"
    public = {route for route, guards in declared.items() if guards == ["public"]}
    assert public == PUBLIC


def test_only_the_frameworks_pages_are_routes_without_a_guard(app: FastAPI) -> None:
    others = {
        route.path
        for route in all_routes(app)
        if not isinstance(getattr(route, "original_route", route), APIRoute)
    }
    assert others == FRAMEWORK_PUBLIC | STATIC_FILES
