"""Terraform declares exactly the topology of shared/topology.py, with least privilege.

`terraform/topology.tf` holds literal locals mirroring topology.py; every resource that carries a
topology name iterates over one of them with for_each. These tests parse `terraform/*.tf` with
python-hcl2 and check, in both directions, that the locals name what topology.py names and
nothing else, that the resources really iterate over those locals (so no name is declared a
second time by hand), and the security properties of the IAM.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2 import SerializationOptions

from shared import topology

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
SCHEMA_DIR = ROOT / "pubsub_schemas"
TOPOLOGY_TF = "topology.tf"

# Basic roles grant far more than any function needs.
FORBIDDEN_ROLES = ("roles/editor", "roles/owner")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
SERVICE_ACCOUNT_ID = re.compile(r"^[a-z](?:[-a-z0-9]{4,28}[a-z0-9])$")


# --- Parsing --------------------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return hcl2.load(
            handle,
            serialization_options=SerializationOptions(strip_string_quotes=True, with_comments=False),
        )


@cache
def parsed() -> dict[str, dict[str, Any]]:
    files = sorted(TERRAFORM.glob("*.tf"))
    assert files, f"no Terraform files in {TERRAFORM}"
    return {path.name: _load(path) for path in files}


def _clean(value: Any) -> Any:
    """Drop python-hcl2's metadata keys (`__is_block__` and the like)."""
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items() if not key.startswith("__")}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def locals_in(filename: str | None = None) -> dict[str, Any]:
    """Every local value, from one file or from all of them (a name may be defined only once)."""
    values: dict[str, Any] = {}
    for name, document in parsed().items():
        if filename is not None and name != filename:
            continue
        for block in document.get("locals", []):
            for key, value in _clean(block).items():
                assert key not in values, f"local.{key} is defined twice"
                values[key] = value
    return values


def resources(kind: str = "resource") -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(file, type, name, body) of every resource (or data source) block."""
    for filename, document in parsed().items():
        for block in document.get(kind, []):
            for rtype, named in block.items():
                if rtype.startswith("__"):
                    continue
                for rname, body in named.items():
                    if not rname.startswith("__"):
                        yield filename, rtype, rname, _clean(body)


def resources_of_optional(rtype: str) -> dict[str, dict[str, Any]]:
    return {rname: body for _, kind, rname, body in resources() if kind == rtype}


def resources_of(rtype: str) -> dict[str, dict[str, Any]]:
    found = {rname: body for _, kind, rname, body in resources() if kind == rtype}
    assert found, f"no {rtype} resource in terraform/"
    return found


def resource(rtype: str, rname: str) -> dict[str, Any]:
    found = resources_of(rtype)
    assert rname in found, f"{rtype}.{rname} is not declared"
    return found[rname]


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """A nested block that must occur exactly once."""
    blocks = body.get(name)
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {name} block, got {blocks!r}"
    return blocks[0]


def expression(text: str) -> str:
    """The expression inside a `${...}` string, as the parser serializes it."""
    assert isinstance(text, str) and text.startswith("${") and text.endswith("}"), text
    return text[2:-1]


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def variable_default(name: str) -> Any:
    for document in parsed().values():
        for declared in document.get("variable", []):
            if name in declared:
                return _clean(declared[name]).get("default")
    raise AssertionError(f"variable {name!r} is not declared")


# --- What topology.py names -----------------------------------------------------------------


def topology_topics() -> dict[str, str | None]:
    return {topic.name: topic.schema for topic in topology.TOPICS}


def topology_subscriptions() -> dict[str, dict[str, Any]]:
    return {
        sub.name: {
            "topic": sub.topic,
            "consumer": sub.consumer,
            "dead_letter_topic": sub.dead_letter_topic,
            "ack_deadline_seconds": sub.ack_deadline_seconds,
            "max_delivery_attempts": sub.max_delivery_attempts,
            "minimum_backoff_seconds": sub.minimum_backoff_seconds,
            "maximum_backoff_seconds": sub.maximum_backoff_seconds,
        }
        for sub in topology.SUBSCRIPTIONS
    }


def all_topic_names() -> set[str]:
    return set(topology_topics()) | {sub.dead_letter_topic for sub in topology.SUBSCRIPTIONS}


def all_subscription_names() -> set[str]:
    # Push subscriptions, and the pull subscription named after each dead-letter topic.
    return {sub.name for sub in topology.SUBSCRIPTIONS} | {
        sub.dead_letter_topic for sub in topology.SUBSCRIPTIONS
    }


# --- The locals mirror topology.py, in both directions --------------------------------------


def test_topology_locals_live_in_topology_tf() -> None:
    mirrored = {"schema_files", "topics", "agent_topics", "functions", "subscriptions", "secrets",
                "scheduler_jobs", "webhook_function", "orchestrator_function", "events_topic",
                "ticks_topic", "results_topic"}
    assert mirrored <= set(locals_in(TOPOLOGY_TF))


def test_schema_files_match_topology() -> None:
    assert locals_in(TOPOLOGY_TF)["schema_files"] == topology.SCHEMA_FILES


def test_every_schema_file_exists() -> None:
    missing = [name for name in locals_in(TOPOLOGY_TF)["schema_files"].values()
               if not (SCHEMA_DIR / name).is_file()]
    assert not missing, f"schema files missing from pubsub_schemas/: {missing}"


def test_topics_and_their_schemas_match_topology() -> None:
    assert locals_in(TOPOLOGY_TF)["topics"] == topology_topics()


def test_topics_with_a_fixed_role_match_topology() -> None:
    values = locals_in(TOPOLOGY_TF)
    assert values["events_topic"] == topology.GITHUB_EVENTS
    assert values["ticks_topic"] == topology.SCHEDULE_TICKS
    assert values["results_topic"] == topology.AGENT_RESULTS


def test_agents_match_topology() -> None:
    assert locals_in(TOPOLOGY_TF)["agent_topics"] == {a.entry_point: a.topic for a in topology.AGENTS}


def test_functions_match_topology() -> None:
    values = locals_in(TOPOLOGY_TF)
    assert set(values["functions"]) == set(topology.FUNCTIONS)
    assert values["webhook_function"] == topology.WEBHOOK_FUNCTION
    assert values["orchestrator_function"] == topology.ORCHESTRATOR_FUNCTION


def test_subscriptions_match_topology() -> None:
    assert locals_in(TOPOLOGY_TF)["subscriptions"] == topology_subscriptions()


def test_secrets_and_their_readers_match_topology() -> None:
    declared = locals_in(TOPOLOGY_TF)["secrets"]
    assert {secret: sorted(readers) for secret, readers in declared.items()} == {
        secret: sorted(readers) for secret, readers in topology.SECRETS.items()
    }


def test_scheduler_jobs_match_topology() -> None:
    assert locals_in(TOPOLOGY_TF)["scheduler_jobs"] == {
        job.name: {"job": job.job, "schedule": job.schedule} for job in topology.SCHEDULER_JOBS
    }


# --- The resources iterate over those locals, and nothing else declares a name --------------

# (type, name, the local it iterates over, attribute holding the name, how the name is derived)
NAMED_RESOURCES = [
    ("google_pubsub_schema", "schema", "schema_files", "name", "each.key"),
    ("google_pubsub_topic", "topic", "topics", "name", "each.key"),
    ("google_pubsub_topic", "dead_letter", "subscriptions", "name", "each.value.dead_letter_topic"),
    ("google_pubsub_subscription", "push", "subscriptions", "name", "each.key"),
    ("google_pubsub_subscription", "dead_letter", "subscriptions", "name",
     "each.value.dead_letter_topic"),
    ("google_cloudfunctions2_function", "function", "functions", "name", 'replace(each.key, "_", "-")'),
    ("google_secret_manager_secret", "secret", "secrets", "secret_id", "each.key"),
    ("google_cloud_scheduler_job", "tick", "scheduler_jobs", "name", "each.key"),
    ("google_service_account", "function", "functions", "account_id", None),
    ("google_service_account", "push", "consumers", "account_id", None),
]


@pytest.mark.parametrize(("rtype", "rname", "local", "attribute", "derived"), NAMED_RESOURCES,
                         ids=[f"{row[0]}.{row[1]}" for row in NAMED_RESOURCES])
def test_named_resource_iterates_over_its_local(rtype: str, rname: str, local: str, attribute: str,
                                                derived: str | None) -> None:
    body = resource(rtype, rname)
    assert expression(body["for_each"]) == f"local.{local}"
    if derived is not None:
        assert expression(body[attribute]) == derived


@pytest.mark.parametrize("rtype", sorted({row[0] for row in NAMED_RESOURCES}))
def test_no_named_resource_is_declared_outside_the_locals(rtype: str) -> None:
    expected = {row[1] for row in NAMED_RESOURCES if row[0] == rtype}
    if rtype == "google_service_account":
        expected.add("build")  # the one identity topology.py has no name for: function builds
    assert set(resources_of(rtype)) == expected


def test_declared_topic_names_are_exactly_the_topology_ones() -> None:
    values = locals_in(TOPOLOGY_TF)
    declared = set(values["topics"]) | {sub["dead_letter_topic"] for sub in values["subscriptions"].values()}
    assert declared == all_topic_names()


def test_declared_subscription_names_are_exactly_the_topology_ones() -> None:
    subscriptions = locals_in(TOPOLOGY_TF)["subscriptions"]
    declared = set(subscriptions) | {sub["dead_letter_topic"] for sub in subscriptions.values()}
    assert declared == all_subscription_names()


def test_function_entry_point_is_the_topology_name() -> None:
    build = block(resource("google_cloudfunctions2_function", "function"), "build_config")
    assert expression(build["entry_point"]) == "each.key"


def test_scheduler_jobs_publish_their_tick_to_the_ticks_topic() -> None:
    job = resource("google_cloud_scheduler_job", "tick")
    assert expression(job["schedule"]) == "each.value.schedule"
    assert expression(job["time_zone"]) == "var.time_zone"
    target = block(job, "pubsub_target")
    assert expression(target["topic_name"]) == "google_pubsub_topic.topic[local.ticks_topic].id"
    assert expression(target["data"]) == "base64encode(jsonencode({job = each.value.job}))"


def test_topology_names_are_spelled_only_in_topology_tf() -> None:
    names = (all_topic_names() | all_subscription_names() | set(topology.SCHEMA_FILES)
             | set(topology.SECRETS) | {job.name for job in topology.SCHEDULER_JOBS})
    offenders = []
    for path in sorted(TERRAFORM.glob("*.tf")):
        if path.name == TOPOLOGY_TF:
            continue
        text = path.read_text()
        offenders += [f"{path.name}: {name}" for name in sorted(names) if f'"{name}"' in text]
    assert not offenders, f"topology names written outside {TOPOLOGY_TF}: {offenders}"


def test_function_names_used_outside_the_locals_exist_in_topology() -> None:
    referenced = set(locals_in("iam.tf")["extra_project_roles"])
    for path in sorted(TERRAFORM.glob("*.tf")):
        referenced |= set(re.findall(r'\.function\["([^"]+)"\]', path.read_text()))
    assert referenced, "expected the IAM to name deploy_agent and monitor_agent"
    assert referenced <= set(topology.FUNCTIONS), referenced - set(topology.FUNCTIONS)


# --- Pub/Sub wiring -------------------------------------------------------------------------


def test_schemas_are_avro_read_from_pubsub_schemas() -> None:
    schema = resource("google_pubsub_schema", "schema")
    assert schema["type"] == "AVRO"
    assert expression(schema["definition"]) == 'file("${path.module}/../pubsub_schemas/${each.value}")'


def test_topics_with_a_schema_use_it_with_json_encoding() -> None:
    topic = resource("google_pubsub_topic", "topic")
    dynamic = block(topic, "dynamic")["schema_settings"]
    assert expression(dynamic["for_each"]) == "each.value == null ? [] : [each.value]"
    content = dynamic["content"][0]
    assert expression(content["schema"]) == "google_pubsub_schema.schema[schema_settings.value].id"
    assert content["encoding"] == "JSON"


def test_push_subscriptions_authenticate_to_their_consumer() -> None:
    push = resource("google_pubsub_subscription", "push")
    assert expression(push["topic"]) == "google_pubsub_topic.topic[each.value.topic].id"
    assert expression(push["ack_deadline_seconds"]) == "each.value.ack_deadline_seconds"
    config = block(push, "push_config")
    uri = "google_cloudfunctions2_function.function[each.value.consumer].service_config[0].uri"
    # The consumer runtime reads the topic (and so the schema) from the end of the push path.
    topic_path = "/projects/${var.project_id}/topics/${each.value.topic}"
    assert config["push_endpoint"] == "${" + uri + "}" + topic_path
    token = block(config, "oidc_token")
    push_account = "google_service_account.push[each.value.consumer].email"
    assert expression(token["service_account_email"]) == push_account
    assert expression(token["audience"]) == uri


def test_push_subscriptions_retry_and_dead_letter_as_topology_says() -> None:
    push = resource("google_pubsub_subscription", "push")
    retry = block(push, "retry_policy")
    assert retry["minimum_backoff"] == "${each.value.minimum_backoff_seconds}s"
    assert retry["maximum_backoff"] == "${each.value.maximum_backoff_seconds}s"
    dead_letter = block(push, "dead_letter_policy")
    assert expression(dead_letter["dead_letter_topic"]) == "google_pubsub_topic.dead_letter[each.key].id"
    assert expression(dead_letter["max_delivery_attempts"]) == "each.value.max_delivery_attempts"


def test_subscriptions_never_expire_and_dead_letters_are_kept_a_week() -> None:
    for rname in ("push", "dead_letter"):
        assert block(resource("google_pubsub_subscription", rname), "expiration_policy")["ttl"] == ""
    parked = resource("google_pubsub_subscription", "dead_letter")
    assert expression(parked["topic"]) == "google_pubsub_topic.dead_letter[each.key].id"
    assert parked["message_retention_duration"] == "604800s"


def test_topology_delivery_settings_are_within_pubsub_limits() -> None:
    for sub in topology.SUBSCRIPTIONS:
        assert 10 <= sub.ack_deadline_seconds <= 600, sub
        assert 5 <= sub.max_delivery_attempts <= 100, sub
        assert 0 <= sub.minimum_backoff_seconds <= sub.maximum_backoff_seconds <= 600, sub


def test_pubsub_service_agent_can_dead_letter_and_mint_push_tokens() -> None:
    publisher = resource("google_pubsub_topic_iam_member", "dead_letter_publisher")
    assert expression(publisher["for_each"]) == "local.subscriptions"
    assert expression(publisher["topic"]) == "google_pubsub_topic.dead_letter[each.key].name"
    assert publisher["role"] == "roles/pubsub.publisher"
    subscriber = resource("google_pubsub_subscription_iam_member", "dead_letter_subscriber")
    assert expression(subscriber["for_each"]) == "local.subscriptions"
    assert expression(subscriber["subscription"]) == "google_pubsub_subscription.push[each.key].name"
    assert subscriber["role"] == "roles/pubsub.subscriber"
    creator = resource("google_service_account_iam_member", "push_token_creator")
    assert expression(creator["for_each"]) == "local.consumers"
    assert creator["role"] == "roles/iam.serviceAccountTokenCreator"
    agent = "local.pubsub_service_agent"
    assert {expression(r["member"]) for r in (publisher, subscriber, creator)} == {agent}
    assert "@gcp-sa-pubsub.iam.gserviceaccount.com" in locals_in("main.tf")["pubsub_service_agent"]


def test_functions_publish_only_to_their_own_topics() -> None:
    # The webhook to the events topic, the orchestrator to each agent topic, each agent to the
    # results topic: nothing else.
    assert expression(locals_in("iam.tf")["topic_publishers"]) == (
        'merge({"${local.events_topic} ${local.webhook_function}" = '
        "{topic = local.events_topic, function = local.webhook_function}}, "
        '{for agent, topic in local.agent_topics : "${topic} ${local.orchestrator_function}" => '
        "{topic = topic, function = local.orchestrator_function}}, "
        '{for agent, topic in local.agent_topics : "${local.results_topic} ${agent}" => '
        "{topic = local.results_topic, function = agent}})")
    grant = resource("google_pubsub_topic_iam_member", "publisher")
    assert expression(grant["for_each"]) == "local.topic_publishers"
    assert expression(grant["topic"]) == "google_pubsub_topic.topic[each.value.topic].name"
    assert grant["role"] == "roles/pubsub.publisher"
    assert expression(grant["member"]) == "google_service_account.function[each.value.function].member"
    topic_grants = resources_of("google_pubsub_topic_iam_member")
    assert set(topic_grants) == {"publisher", "scheduler_publisher", "dead_letter_publisher"}
    assert {body["role"] for body in topic_grants.values()} == {"roles/pubsub.publisher"}


def test_cloud_scheduler_may_publish_ticks_only() -> None:
    grant = resource("google_pubsub_topic_iam_member", "scheduler_publisher")
    assert expression(grant["topic"]) == "google_pubsub_topic.topic[local.ticks_topic].name"
    assert grant["role"] == "roles/pubsub.publisher"
    assert expression(grant["member"]) == "local.scheduler_service_agent"


# --- Functions and least privilege ----------------------------------------------------------


def test_each_function_runs_as_its_own_service_account() -> None:
    function = resource("google_cloudfunctions2_function", "function")
    service = block(function, "service_config")
    assert expression(service["service_account_email"]) == "google_service_account.function[each.key].email"
    # The account ids, as Terraform derives them with the default prefix, are distinct and valid.
    prefix = variable_default("name_prefix")
    functions = set(locals_in(TOPOLOGY_TF)["functions"])
    consumers = functions - set(topology.HTTP_FUNCTIONS)
    ids = [f"{prefix}-{name.replace('_', '-')}" for name in functions]
    ids += [f"{prefix}-push-{name.replace('_', '-')}" for name in consumers]
    ids.append(f"{prefix}-build")
    assert len(ids) == len(set(ids))
    invalid = [account_id for account_id in ids if not SERVICE_ACCOUNT_ID.match(account_id)]
    assert not invalid, f"invalid service account ids: {invalid}"
    # ...which is how Terraform derives them: one per function, one per consumer's push identity.
    assert resource("google_service_account", "function")["account_id"] == (
        '${var.name_prefix}-${replace(each.key, "_", "-")}')
    assert resource("google_service_account", "push")["account_id"] == (
        '${var.name_prefix}-push-${replace(each.key, "_", "-")}')
    assert resource("google_service_account", "build")["account_id"] == "${var.name_prefix}-build"


def test_functions_are_plain_http_services_invoked_by_push() -> None:
    function = resource("google_cloudfunctions2_function", "function")
    assert "event_trigger" not in function
    assert expression(function["build_config"][0]["runtime"]) == "var.python_runtime"
    assert variable_default("python_runtime") == "python311"
    storage = block(block(block(function, "build_config"), "source"), "storage_source")
    assert expression(storage["bucket"]) == "google_storage_bucket.source.name"
    assert expression(storage["object"]) == "google_storage_bucket_object.source.name"


def test_only_the_http_functions_accept_traffic_from_the_internet() -> None:
    # The webhook authenticates every request itself; the dashboard is behind Cloud Run's IAM.
    service = block(resource("google_cloudfunctions2_function", "function"), "service_config")
    assert expression(service["ingress_settings"]) == (
        'contains(local.http_functions, each.key) ? "ALLOW_ALL" : "ALLOW_INTERNAL_ONLY"')
    values = locals_in("functions.tf")
    assert values["http_functions"] == ["${local.webhook_function}", "${local.dashboard_function}"]
    assert locals_in(TOPOLOGY_TF)["dashboard_function"] == topology.DASHBOARD_FUNCTION
    assert expression(values["consumers"]) == (
        "{for name, settings in local.functions : name => settings if !contains(local.http_functions, name)}")


def test_consumer_timeouts_fit_their_ack_deadlines() -> None:
    functions = locals_in(TOPOLOGY_TF)["functions"]
    assert functions[topology.WEBHOOK_FUNCTION]["timeout_seconds"] <= 10  # GitHub waits 10 s
    for consumer in topology.CONSUMER_FUNCTIONS:
        deadline = min(s.ack_deadline_seconds for s in topology.SUBSCRIPTIONS if s.consumer == consumer)
        assert functions[consumer]["timeout_seconds"] <= deadline, consumer


def test_function_environment_is_what_the_config_reads() -> None:
    environment = locals_in("functions.tf")["function_env"]
    required = {"GOOGLE_CLOUD_PROJECT", "GITHUB_APP_ID", "GITHUB_API_URL", "AGENTOPS_WATCHED_REPOS"}
    assert required <= set(environment)
    assert expression(environment["AGENTOPS_WATCHED_REPOS"]) == 'join(",", var.watched_repos)'
    config = (ROOT / "shared" / "config.py").read_text()
    unread = [name for name in environment if f'"{name}"' not in config]
    assert not unread, f"environment variables the runtime never reads: {unread}"


def test_no_basic_role_anywhere() -> None:
    offenders = [f"{path.name}: {role}" for path in sorted(TERRAFORM.rglob("*"))
                 if path.is_file() and ".terraform" not in path.parts
                 for role in FORBIDDEN_ROLES if role in path.read_text(errors="replace")]
    assert not offenders, offenders


def test_public_invoker_exists_for_the_webhook_only() -> None:
    public = [(rtype, rname, body) for _, rtype, rname, body in resources()
              if any(member in PUBLIC_MEMBERS for member in strings(body.get("member", "")))]
    assert len(public) == 1, [(rtype, rname) for rtype, rname, _ in public]
    rtype, _, body = public[0]
    assert rtype == "google_cloud_run_v2_service_iam_member"
    assert body["member"] == "allUsers"
    assert body["role"] == "roles/run.invoker"
    assert "for_each" not in body and "count" not in body
    assert expression(body["name"]) == (
        "google_cloudfunctions2_function.function[local.webhook_function].service_config[0].service")


def test_each_consumer_is_invoked_by_its_own_push_account_only() -> None:
    invokers = resources_of("google_cloud_run_v2_service_iam_member")
    assert set(invokers) == {"push_invoker", "webhook_public", "dashboard_viewer"}
    push = invokers["push_invoker"]
    assert expression(push["for_each"]) == "local.consumers"
    assert push["role"] == "roles/run.invoker"
    assert expression(push["member"]) == "google_service_account.push[each.key].member"
    assert expression(push["name"]) == (
        "google_cloudfunctions2_function.function[each.key].service_config[0].service")


def test_the_dashboard_is_invoked_only_by_the_listed_viewers_and_reads_firestore_only() -> None:
    viewer = resource("google_cloud_run_v2_service_iam_member", "dashboard_viewer")
    assert expression(viewer["for_each"]) == "toset(var.dashboard_viewers)"
    assert viewer["role"] == "roles/run.invoker"
    assert expression(viewer["member"]) == "each.value"
    assert expression(viewer["name"]) == (
        "google_cloudfunctions2_function.function[local.dashboard_function].service_config[0].service")
    assert variable_default("dashboard_viewers") == []
    roles = expression(locals_in("iam.tf")["firestore_roles"])
    assert roles == ('{for name, settings in local.functions : name => name == local.dashboard_function ? '
                     '"roles/datastore.viewer" : "roles/datastore.user"}')
    assert topology.DASHBOARD_FUNCTION not in locals_in("iam.tf")["extra_project_roles"]
    assert not any(topology.DASHBOARD_FUNCTION in readers for readers in topology.SECRETS.values())


def test_secrets_are_readable_only_by_their_listed_functions() -> None:
    accessors = [(rtype, rname, body) for _, rtype, rname, body in resources()
                 if body.get("role") == "roles/secretmanager.secretAccessor"]
    assert [(rtype, rname) for rtype, rname, _ in accessors] == [
        ("google_secret_manager_secret_iam_member", "accessor")]
    body = accessors[0][2]
    assert expression(body["for_each"]) == "local.secret_readers"
    assert expression(body["secret_id"]) == "google_secret_manager_secret.secret[each.value.secret].secret_id"
    assert expression(body["member"]) == "google_service_account.function[each.value.function].member"
    # One grant per (secret, reader) pair of local.secrets, and no other.
    assert expression(locals_in("secrets.tf")["secret_readers"]) == (
        "{for grant in flatten([for secret, readers in local.secrets : [for function in readers : "
        '{secret = secret, function = function}]]) : "${grant.secret} ${grant.function}" => grant}')
    assert not resources_of_optional("google_secret_manager_secret_version"), "secret values in state"


def test_project_level_grants_are_the_listed_roles_only() -> None:
    grants = resources_of("google_project_iam_member")
    assert set(grants) == {"function", "build"}
    assert expression(grants["function"]["for_each"]) == "local.function_project_roles"
    assert expression(grants["build"]["for_each"]) == "toset(local.build_roles)"
    iam = locals_in("iam.tf")
    assert "concat([local.firestore_roles[name]], lookup(local.extra_project_roles, name, []))" in (
        iam["function_project_roles"])
    assert set(iam["extra_project_roles"]) == {"deploy_agent", "monitor_agent"}
    assert set(re.findall(r'"(roles/[^"]+)"', iam["extra_project_roles"]["deploy_agent"])) == {
        "roles/appengine.deployer", "roles/appengine.serviceAdmin", "roles/cloudbuild.builds.editor",
        "roles/monitoring.viewer"}
    assert iam["extra_project_roles"]["monitor_agent"] == ["roles/monitoring.viewer"]
    assert set(iam["build_roles"]) == {
        "roles/artifactregistry.writer", "roles/logging.logWriter", "roles/storage.objectAdmin"}


def test_deploy_agent_may_act_as_the_app_engine_account_only() -> None:
    grant = resource("google_service_account_iam_member", "deploy_agent_app_engine")
    assert grant["role"] == "roles/iam.serviceAccountUser"
    assert grant["service_account_id"].endswith("@appspot.gserviceaccount.com")
    assert expression(grant["member"]) == 'google_service_account.function["deploy_agent"].member'
    users = [rname for _, rtype, rname, body in resources()
             if body.get("role") == "roles/iam.serviceAccountUser"]
    assert users == ["deploy_agent_app_engine"]


# --- Firestore, source, variables and outputs -----------------------------------------------


def test_firestore_is_native_with_ttl_on_every_expiring_collection() -> None:
    database = resource("google_firestore_database", "default")
    assert database["name"] == "(default)"
    assert database["type"] == "FIRESTORE_NATIVE"
    assert expression(database["location_id"]) == "var.firestore_location"
    assert locals_in("firestore.tf")["ttl_fields"] == topology.TTL_FIELDS
    field = resource("google_firestore_field", "ttl")
    assert expression(field["for_each"]) == "local.ttl_fields"
    assert "ttl_config" in field


def test_source_archive_leaves_out_local_state_tests_and_tooling() -> None:
    archive = next(body for _, rtype, rname, body in resources("data") if rtype == "archive_file")
    assert expression(archive["excludes"]) == "local.source_excludes"
    excludes = expression(locals_in("main.tf")["source_excludes"])
    for path in (".venv", ".git", "tests", "terraform", "bench", ".ci", ".agentops", "**/__pycache__",
                 "sandbox", "scripts", "docs"):
        assert f'"{path}"' in excludes, path
    bucket = resource("google_storage_bucket", "source")
    assert bucket["uniform_bucket_level_access"] is True
    assert block(bucket, "versioning")["enabled"] is True


def test_variables_and_outputs_a_deployment_needs() -> None:
    assert variable_default("region") == "us-central1"
    assert variable_default("time_zone") == "Etc/UTC"
    assert variable_default("watched_repos") == []
    assert variable_default("github_api_url") == "https://api.github.com"
    for required in ("project_id", "github_app_id"):
        assert variable_default(required) is None
    outputs = {name for document in parsed().values() for declared in document.get("output", [])
               for name in declared if not name.startswith("__")}
    assert {"webhook_url", "dashboard_url", "topics", "function_service_accounts", "push_service_accounts",
            "secret_ids"} <= outputs
    webhook = next(_clean(declared["webhook_url"]) for document in parsed().values()
                   for declared in document.get("output", []) if "webhook_url" in declared)
    assert expression(webhook["value"]) == (
        "google_cloudfunctions2_function.function[local.webhook_function].url")


@pytest.mark.skipif(shutil.which("terraform") is None,
                    reason="terraform is not installed: the formatting check is an optional extra")
def test_terraform_is_formatted() -> None:
    result = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
