"""/admin/doctor: the same checks as `inhouse doctor`, for the web UI."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request

from inhouse.api.deps import app_state
from inhouse.api.guard import guard
from inhouse.auth.policy import Permission
from inhouse.doctor import run_checks

router = APIRouter(prefix="/admin")


@router.get("/doctor", dependencies=[guard(Permission.SYSTEM_READ)])
def doctor(request: Request) -> dict[str, Any]:
    """Air-gap (by trying), storage, audit, models, keys; `ok` false when any check fails."""
    checks = run_checks(app_state(request).settings, install=False)
    return {
        "ok": all(check.status != "fail" for check in checks),
        "checks": [asdict(check) for check in checks],
    }
