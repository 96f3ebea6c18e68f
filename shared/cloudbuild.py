"""Cloud Build for the deploy agent: one build per release that deploys the merge commit without promotion.

The build fetches the repository at the merge commit (`source.gitSource`: Cloud Build runs `git fetch`
of the revision, so the build runs exactly that commit) and runs

    gcloud app deploy <config> --no-promote --version=<version> --quiet --project=<project>

in Google's Cloud SDK builder image. `--no-promote` leaves all traffic where it was: the canary moves
it later with traffic splits. Builds are created on the global endpoint (`projects/{project}/builds`),
whose status changes Cloud Build publishes to the project's `cloud-builds` topic; the orchestrator
wakes the release on those, so this adapter only creates and reads builds.

Idempotent by tag: every build of a release carries `release-<release_id>`, and `deploy` first lists
builds with that tag and reuses the newest, so a step redelivered after a lost answer does not deploy
twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import requests

from shared.google_auth import TokenSource
from shared.google_rest import DEFAULT_TIMEOUT_SECONDS, GoogleRestClient, GoogleUnavailable

# Google's Cloud SDK image, the builder Cloud Build's App Engine deployment guide uses.
GCLOUD_BUILDER = "gcr.io/google.com/cloudsdktool/cloud-sdk"
AGENTOPS_TAG = "agentops"
DEFAULT_BUILD_TIMEOUT_SECONDS = 1200
# Cloud Build tags: a word character, then word characters, dots and hyphens, at most 128 in all.
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_VERSION_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SHA = re.compile(r"^[0-9a-f]{7,64}$")
_CONFIG_PATH = re.compile(r"^[A-Za-z0-9_./-]+\.ya?ml$")


def release_tag(release_id: str) -> str:
    tag = f"release-{release_id}"
    if not _TAG.match(tag):
        raise ValueError(f"release id {release_id!r} does not make a valid Cloud Build tag")
    return tag


def git_source(repository_url: str, sha: str) -> dict[str, Any]:
    """A Build `source` that fetches `sha` from a Git repository Cloud Build can reach over HTTPS."""
    if not repository_url.startswith("https://"):
        raise ValueError(f"the repository URL must be https, got {repository_url!r}")
    return {"gitSource": {"url": repository_url, "revision": sha}}


class CloudBuild:
    """Cloud Build v1 for one project.

    `service_account`, when given (an email), is the identity the build runs as (it needs App Engine
    deploy rights); otherwise the project's default Cloud Build service account runs it. With a
    user-specified account Cloud Build requires a logging choice, so logs then go to Cloud Logging only.
    """

    def __init__(self, base_url: str, project: str, token_source: TokenSource,
                 session: requests.Session | None = None, timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 service_account: str = "",
                 build_timeout_seconds: int = DEFAULT_BUILD_TIMEOUT_SECONDS) -> None:
        if not project:
            raise ValueError("a project id is required")
        self.project = project
        self.service_account = service_account
        self.build_timeout_seconds = build_timeout_seconds
        self._client = GoogleRestClient(base_url, token_source, session=session, timeout=timeout,
                                        api="Cloud Build API")

    def build_request(self, source: str | Mapping[str, Any], sha: str, service: str, version: str,
                      release_id: str, config_path: str = "app.yaml") -> dict[str, Any]:
        """The Build resource `deploy` creates (pure, so it can be checked against the discovery document).

        `source` is the repository's HTTPS clone URL (fetched at `sha` with gitSource) or a ready
        Build `source` (a connectedRepository for a private repository, say), used as given.
        `service` is not a flag of `gcloud app deploy` (the config's `service:` names it); it is
        checked, and recorded in the step's environment so the build log says what it deploys.
        """
        if not _SHA.match(sha):
            raise ValueError(f"not a commit sha: {sha!r}")
        if not _VERSION_ID.match(version) or version.startswith("ah-") or version in ("default", "latest"):
            raise ValueError(f"not an App Engine version id: {version!r}")
        if not _VERSION_ID.match(service):
            raise ValueError(f"not an App Engine service id: {service!r}")
        relative = not config_path.startswith("/") and ".." not in config_path.split("/")
        if not _CONFIG_PATH.match(config_path) or not relative:
            raise ValueError(f"the App Engine config must be a relative .yaml path, got {config_path!r}")
        build_source = git_source(source, sha) if isinstance(source, str) else dict(source)
        build: dict[str, Any] = {
            "source": build_source,
            "steps": [{
                "id": "deploy",
                "name": GCLOUD_BUILDER,
                "entrypoint": "gcloud",
                "args": ["app", "deploy", config_path, "--no-promote", f"--version={version}", "--quiet",
                         f"--project={self.project}"],
                "env": [f"AGENTOPS_SERVICE={service}", f"AGENTOPS_SHA={sha}",
                        f"AGENTOPS_RELEASE={release_id}"],
            }],
            "tags": [AGENTOPS_TAG, release_tag(release_id)],
            "timeout": f"{self.build_timeout_seconds}s",
        }
        if self.service_account:
            build["serviceAccount"] = f"projects/{self.project}/serviceAccounts/{self.service_account}"
            build["options"] = {"logging": "CLOUD_LOGGING_ONLY"}
        return build

    def find(self, release_id: str) -> dict[str, Any] | None:
        """The newest build tagged for the release, or None (builds.list sorts newest first)."""
        answer = self._client.request("GET", f"v1/projects/{self.project}/builds",
                                      params={"filter": f'tags="{release_tag(release_id)}"', "pageSize": 1})
        builds = answer.get("builds", [])
        return builds[0] if builds else None

    def deploy(self, source: str | Mapping[str, Any], sha: str, service: str, version: str, release_id: str,
               config_path: str = "app.yaml") -> str:
        """The id of the release's build: the existing one if there is one, else a new one (builds.create)."""
        build = self.build_request(source, sha, service, version, release_id, config_path)
        existing = self.find(release_id)
        if existing is not None and existing.get("id"):
            return str(existing["id"])
        operation = self._client.request("POST", f"v1/projects/{self.project}/builds", body=build)
        build_id = operation.get("metadata", {}).get("build", {}).get("id", "")
        if not build_id:
            # The build may exist without its id reaching us: the next attempt finds it by its tag.
            raise GoogleUnavailable("Cloud Build API builds.create", "the Operation names no build id")
        return str(build_id)

    def get(self, build_id: str) -> dict[str, Any]:
        """projects.builds.get: the Build, with its `status`, `logUrl` and `finishTime`."""
        if not re.fullmatch(r"[A-Za-z0-9-]+", build_id):
            raise ValueError(f"not a build id: {build_id!r}")
        return self._client.request("GET", f"v1/projects/{self.project}/builds/{build_id}")
