"""The Cloud Build adapter: the build it asks for, and its idempotency on redelivery.

There is no Cloud Build emulator, so a small loopback server plays projects.builds.{create,list,get}.
Every request it receives and every answer it gives is checked against the Cloud Build v1 discovery
document shipped in google-api-python-client (paths, parameters, the Build schema, output-only fields),
with the same translation the App Engine sandbox uses.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import pytest
from werkzeug.wrappers import Request, Response

from sandbox.appengine.discovery import Discovery, InvalidRequest
from sandbox.appengine.serving import LoopbackServer
from shared.appengine import static_token_source
from shared.cloudbuild import GCLOUD_BUILDER, CloudBuild, release_tag
from shared.errors import PermanentError, RetryableError
from shared.google_rest import NotFound

PROJECT = "agentops-prod"
TOKEN = "ya29.cloud-build-test-token-0123456789"
REPO = "https://github.com/octo/widgets.git"
SHA = "3f786850e387550fdab836ed7e6dc881de23001b"
VERSION = "v20260302-1200-3f78685"
RELEASE = "default-3f786850e387-0123456789abcdef"
METHODS = ("cloudbuild.projects.builds.create", "cloudbuild.projects.builds.list",
           "cloudbuild.projects.builds.get")
OPERATION_METADATA_TYPE = "type.googleapis.com/google.devtools.cloudbuild.v1.BuildOperationMetadata"


def cloudbuild_discovery() -> Discovery:
    documents = resources.files("googleapiclient").joinpath("discovery_cache", "documents")
    return Discovery(json.loads(documents.joinpath("cloudbuild.v1.json").read_text()))


def google_error(code: int, status: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "status": status, "message": message}}


DISCOVERY = cloudbuild_discovery()


def output_only_fields(build: dict[str, Any]) -> list[str]:
    """Output-only fields a client set: on the Build and on each of its steps."""
    found = [name for name in build if name in DISCOVERY.output_only("Build")]
    for index, step in enumerate(build.get("steps", [])):
        found += [f"steps[{index}].{name}" for name in step if name in DISCOVERY.output_only("BuildStep")]
    return found


class FakeCloudBuild:
    """projects.builds.create/list/get for one project, validated against the discovery document."""

    def __init__(self) -> None:
        self.builds: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str, list[tuple[str, str]]]] = []
        self.problems: list[str] = []
        self.lose_create_answers: list[int] = []  # statuses to answer a create with, after creating
        self._server = LoopbackServer(self.wsgi)
        self.url = self._server.url

    def stop(self) -> None:
        self._server.stop()

    def wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        request = Request(environ)
        status, body = self._answer(request)
        if status < 400 and request.method == "POST" and self.lose_create_answers:
            status = self.lose_create_answers.pop(0)  # the build was created, but the answer is lost
            body = google_error(status, "UNAVAILABLE", "The service is currently unavailable.")
        response = Response(json.dumps(body), status=status, content_type="application/json")
        return response(environ, start_response)

    def _answer(self, request: Request) -> tuple[int, dict[str, Any]]:
        query = list(request.args.items(multi=True))
        self.calls.append((request.method, request.path, query))
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, google_error(401, "UNAUTHENTICATED", "no token")
        for method_id in METHODS:
            method = DISCOVERY.methods[method_id]
            found = method.pattern.match(request.path)
            if found and method.http_method == request.method:
                break
        else:
            return 404, google_error(404, "NOT_FOUND", f"no method at {request.path}")
        try:
            params = DISCOVERY.check_parameters(method, found.groupdict(), query)
            if params["projectId"] != PROJECT:
                return 404, google_error(404, "NOT_FOUND", "no such project")
            body = json.loads(request.get_data() or b"null")
            if method.request:
                DISCOVERY.check_body(method.request, body)
        except InvalidRequest as exc:
            self.problems.append(f"{method_id}: {exc}")
            return 400, google_error(400, "INVALID_ARGUMENT", str(exc))
        status, answer = getattr(self, method_id.rsplit(".", 1)[1])(params, body)
        if status == 200:
            problems = DISCOVERY.schema_errors(method.response, answer)
            self.problems += [f"{method_id} answer: {problem}" for problem in problems]
        return status, answer

    def create(self, params: dict[str, Any], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if output_only_fields(body):
            self.problems.append(f"output-only fields sent: {output_only_fields(body)}")
        build_id = str(uuid.uuid4())
        build = {**body, "id": build_id, "projectId": PROJECT, "status": "QUEUED",
                 "name": f"projects/{PROJECT}/locations/global/builds/{build_id}",
                 "createTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                 "logUrl": f"https://console.cloud.google.com/cloud-build/builds/{build_id}?project=1"}
        self.builds.insert(0, build)  # newest first, as builds.list sorts
        self.problems += [f"created build: {p}" for p in DISCOVERY.schema_errors("Build", build)]
        encoded = base64.urlsafe_b64encode(build_id.encode()).decode()
        return 200, {"name": f"operations/build/{PROJECT}/{encoded}",
                     "metadata": {"@type": OPERATION_METADATA_TYPE, "build": build}}

    def list(self, params: dict[str, Any], body: None) -> tuple[int, dict[str, Any]]:
        wanted = re.fullmatch(r'tags="([^"]+)"', params.get("filter", ""))
        if wanted is None:
            return 400, google_error(400, "INVALID_ARGUMENT", "unsupported filter")
        builds = [build for build in self.builds if wanted[1] in build.get("tags", [])]
        builds = builds[:params["pageSize"]] if params.get("pageSize") else builds
        return 200, {"builds": builds} if builds else {}

    def get(self, params: dict[str, Any], body: None) -> tuple[int, dict[str, Any]]:
        for build in self.builds:
            if build["id"] == params["id"]:
                return 200, build
        return 404, google_error(404, "NOT_FOUND", f"Build {params['id']} not found")


@pytest.fixture
def fake() -> Iterator[FakeCloudBuild]:
    server = FakeCloudBuild()
    yield server
    server.stop()
    assert server.problems == []


@pytest.fixture
def cloudbuild(fake: FakeCloudBuild) -> CloudBuild:
    return CloudBuild(fake.url, PROJECT, static_token_source(TOKEN))


def posts(fake: FakeCloudBuild) -> int:
    return sum(1 for method, _, _ in fake.calls if method == "POST")


# --- The build -------------------------------------------------------------------------------


def test_the_build_deploys_the_merge_commit_without_promotion(cloudbuild):
    build = cloudbuild.build_request(REPO, SHA, "default", VERSION, RELEASE)
    assert DISCOVERY.schema_errors("Build", build) == []
    assert output_only_fields(build) == []
    assert build["source"] == {"gitSource": {"url": REPO, "revision": SHA}}
    (step,) = build["steps"]
    assert (step["name"], step["entrypoint"]) == (GCLOUD_BUILDER, "gcloud")
    assert step["args"] == ["app", "deploy", "app.yaml", "--no-promote", f"--version={VERSION}", "--quiet",
                            f"--project={PROJECT}"]
    assert build["tags"] == ["agentops", f"release-{RELEASE}"]
    assert build["timeout"] == "1200s"
    assert "serviceAccount" not in build and "options" not in build


def test_a_build_service_account_logs_to_cloud_logging(fake):
    account = f"deployer@{PROJECT}.iam.gserviceaccount.com"
    builder = CloudBuild(fake.url, PROJECT, static_token_source(TOKEN), service_account=account)
    build = builder.build_request(REPO, SHA, "api", VERSION, RELEASE, config_path="services/api/app.yaml")
    assert DISCOVERY.schema_errors("Build", build) == []
    assert build["serviceAccount"] == f"projects/{PROJECT}/serviceAccounts/{account}"
    assert build["options"] == {"logging": "CLOUD_LOGGING_ONLY"}
    assert build["steps"][0]["args"][2] == "services/api/app.yaml"


def test_a_ready_source_is_used_as_given(cloudbuild):
    source = {"connectedRepository": {"repository": f"projects/{PROJECT}/locations/us-central1/connections/"
                                                    "github/repositories/octo-widgets", "revision": SHA}}
    build = cloudbuild.build_request(source, SHA, "default", VERSION, RELEASE)
    assert build["source"] == source and DISCOVERY.schema_errors("Build", build) == []


@pytest.mark.parametrize(("change", "value"), [
    ("sha", "main"), ("sha", "3F786850"), ("version", "Release_1"), ("version", "ah-builtin"),
    ("version", "default"), ("service", "Web"), ("config_path", "../app.yaml"), ("config_path", "/app.yaml"),
    ("config_path", "app.json"), ("source", "http://github.com/octo/widgets.git"), ("release_id", "a b"),
])
def test_what_would_make_a_wrong_build_is_refused_before_any_call(cloudbuild, fake, change, value):
    arguments = {"source": REPO, "sha": SHA, "service": "default", "version": VERSION, "release_id": RELEASE,
                 "config_path": "app.yaml", change: value}
    with pytest.raises(ValueError):
        cloudbuild.deploy(**arguments)
    assert fake.calls == []


# --- Idempotency -----------------------------------------------------------------------------


def test_deploy_creates_one_build_and_a_redelivery_reuses_it(cloudbuild, fake):
    build_id = cloudbuild.deploy(REPO, SHA, "default", VERSION, RELEASE)
    assert cloudbuild.deploy(REPO, SHA, "default", VERSION, RELEASE) == build_id
    assert posts(fake) == 1 and len(fake.builds) == 1
    listed = [query for method, _, query in fake.calls if method == "GET"]
    assert listed and all(("filter", f'tags="{release_tag(RELEASE)}"') in query for query in listed)
    assert all(path == f"/v1/projects/{PROJECT}/builds" for _, path, _ in fake.calls)

    other = cloudbuild.deploy(REPO, SHA, "default", VERSION + "-b", RELEASE + "-1")
    assert other != build_id and posts(fake) == 2
    assert cloudbuild.find(RELEASE)["id"] == build_id
    assert cloudbuild.find("never-started") is None


def test_a_lost_create_answer_is_retryable_and_the_retry_finds_the_build(cloudbuild, fake):
    fake.lose_create_answers.append(503)
    with pytest.raises(RetryableError):
        cloudbuild.deploy(REPO, SHA, "default", VERSION, RELEASE)
    assert len(fake.builds) == 1  # it was created all the same
    assert cloudbuild.deploy(REPO, SHA, "default", VERSION, RELEASE) == fake.builds[0]["id"]
    assert posts(fake) == 1


# --- Reading builds --------------------------------------------------------------------------


def test_get_reads_the_build_and_unknown_ids_are_not_found(cloudbuild, fake):
    build_id = cloudbuild.deploy(REPO, SHA, "default", VERSION, RELEASE)
    build = cloudbuild.get(build_id)
    assert build["id"] == build_id and build["status"] == "QUEUED"
    assert build["steps"][0]["args"][1] == "deploy"
    with pytest.raises(NotFound) as missing:
        cloudbuild.get("00000000-0000-0000-0000-000000000000")
    assert isinstance(missing.value, PermanentError) and "not found" in missing.value.message
    with pytest.raises(ValueError):
        cloudbuild.get("../operations")


def test_a_refused_build_is_permanent_with_cloud_builds_message(fake):
    wrong = CloudBuild(fake.url, "someone-elses-project", static_token_source(TOKEN))
    with pytest.raises(PermanentError, match="no such project"):
        wrong.deploy(REPO, SHA, "default", VERSION, RELEASE)
