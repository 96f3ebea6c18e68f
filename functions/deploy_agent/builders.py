"""How a release's version gets built and deployed without traffic.

Two ways, chosen by `AGENTOPS_DEPLOY_BACKEND`:

- `cloudbuild` (production): Cloud Build runs `gcloud app deploy --no-promote --version=<id>` on the
  merge commit. Its completion arrives on the `cloud-builds` topic and wakes the release; `status`
  asks Cloud Build directly, for a tick that comes first or a notification that was lost.
- `versions`: the App Engine versions API creates the version itself. Locally that is the App
  Engine sandbox; the body carries no deployment source, so against Google this backend suits
  only apps whose versions need none. Its Operation is the "build": `status` reads it on the
  monitor's next tick.

Both are idempotent: a retried `start` finds the build (by its release tag) or the version (by its
id) made before, instead of making a second one.
"""

from __future__ import annotations

from typing import Any

from functions.deploy_agent.release import BUILD_SUCCESS, Release
from shared.errors import PermanentError

EXISTING = "version:"  # a build id meaning "the version already existed when we asked"


class CloudBuildBuilder:
    def __init__(self, cloudbuild: Any) -> None:
        self._cloudbuild = cloudbuild

    def start(self, release: Release, repository_url: str) -> str:
        return str(self._cloudbuild.deploy(repository_url, release.sha, release.service, release.version,
                                           release.id))

    def status(self, build_id: str) -> str:
        build = self._cloudbuild.get(build_id)
        return str(build.get("status") or "") if build else ""


class VersionsBuilder:
    def __init__(self, appengine: Any, runtime: str = "python312") -> None:
        self._appengine = appengine
        self._runtime = runtime

    def start(self, release: Release, repository_url: str) -> str:
        from shared.appengine import AlreadyExists

        body = {"id": release.version, "runtime": self._runtime, "servingStatus": "SERVING"}
        try:
            operation = self._appengine.create_version(release.service, body)
        except AlreadyExists:
            return f"{EXISTING}{release.service}/{release.version}"
        return str(operation.get("name") or f"{EXISTING}{release.service}/{release.version}")

    def status(self, build_id: str) -> str:
        """SUCCESS, FAILURE, or "" while the Operation is not done."""
        if build_id.startswith(EXISTING):
            service, _, version = build_id[len(EXISTING):].partition("/")
            return BUILD_SUCCESS if self._appengine.get_version(service, version) else "FAILURE"
        try:
            operation = self._appengine.get_operation(build_id)
        except PermanentError:
            return "FAILURE"
        done, error = self._appengine.operation_done(operation)
        if not done:
            return ""
        return "FAILURE" if error else BUILD_SUCCESS
