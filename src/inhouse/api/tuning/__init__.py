"""/v1/files (tuning data sets as OpenAI files), /v1/fine_tuning/jobs, and the tuned
versions: promote, rollback, history, schedules."""

from inhouse.api.tuning import files, jobs, versions

routers = (files.router, jobs.router, versions.router)

__all__ = ["routers"]
