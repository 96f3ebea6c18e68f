"""Regenerate the App Engine sandbox's discovery subsets from Google's discovery documents.

The App Engine sandbox validates every request it receives, and every response it returns, against the
methods the deploy and monitor agents call: the App Engine Admin API v1 (`appengine-v1-subset.json`) and
Cloud Monitoring v3's `timeSeries.list` (`monitoring-v3-subset.json`), which the sandbox answers from
what its versions really served. The source is the discovery documents shipped in
google-api-python-client (the same files `discovery.build(..., static_discovery=True)` reads). This keeps
those methods, the global parameters, and the schemas they reference. Usage:

    pip install -r requirements.txt
    python scripts/appengine_discovery_subset.py

Add a method id to METHODS (or MONITORING_METHODS) when code starts calling a new method.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any, NamedTuple

PACKAGE = "google-api-python-client"
DOCUMENT = "appengine.v1.json"
METHODS = (
    "appengine.apps.get",
    "appengine.apps.operations.get",
    "appengine.apps.services.get",
    "appengine.apps.services.list",
    "appengine.apps.services.patch",
    "appengine.apps.services.versions.create",
    "appengine.apps.services.versions.delete",
    "appengine.apps.services.versions.get",
    "appengine.apps.services.versions.list",
)
# What long-running operations carry in `metadata` and `response` (typed by "@type", so not $ref'd).
PAYLOAD_SCHEMAS = ("OperationMetadataV1", "Version", "Service", "Empty")
TOP_LEVEL = (
    "kind", "discoveryVersion", "id", "name", "version", "revision", "title", "description", "protocol",
    "rootUrl", "mtlsRootUrl", "servicePath", "baseUrl", "basePath", "batchPath", "documentationLink",
    "parameters", "auth",
)
SANDBOX = Path(__file__).resolve().parent.parent / "sandbox" / "appengine"
OUTPUT = SANDBOX / "appengine-v1-subset.json"
MONITORING_METHODS = ("monitoring.projects.timeSeries.list",)


class Api(NamedTuple):
    """One discovery document to cut down: where it is, what it is for, and where the subset goes."""

    document: str
    title: str
    purpose: str
    payload_schemas: tuple[str, ...]
    output: Path


APPENGINE = Api(DOCUMENT, "App Engine Admin API v1", "the methods the deploy agent calls",
                PAYLOAD_SCHEMAS, OUTPUT)
MONITORING = Api("monitoring.v3.json", "Cloud Monitoring API v3",
                 "the method that reads App Engine response counts per version", (),
                 SANDBOX / "monitoring-v3-subset.json")


def _refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            found |= _refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _refs(value)
    return found


def _prune(resource: dict[str, Any], methods: tuple[str, ...]) -> dict[str, Any]:
    """The resource tree with only the wanted methods, and only the branches that hold one."""
    pruned: dict[str, Any] = {}
    kept = {name: entry for name, entry in resource.get("methods", {}).items() if entry["id"] in methods}
    if kept:
        pruned["methods"] = dict(sorted(kept.items()))
    children = {}
    for name, child in resource.get("resources", {}).items():
        child_pruned = _prune(child, methods)
        if child_pruned:
            children[name] = child_pruned
    if children:
        pruned["resources"] = dict(sorted(children.items()))
    return pruned


def _method_ids(resource: dict[str, Any]) -> set[str]:
    ids = {entry["id"] for entry in resource.get("methods", {}).values()}
    for child in resource.get("resources", {}).values():
        ids |= _method_ids(child)
    return ids


def subset(document: dict[str, Any], methods: tuple[str, ...], source: str,
           api: Api = APPENGINE) -> dict[str, Any]:
    tree = _prune({"resources": document["resources"]}, methods)
    missing = set(methods) - _method_ids(tree)
    if missing:
        raise SystemExit(f"methods not in the discovery document: {sorted(missing)}")
    schemas: dict[str, Any] = {}
    pending = _refs(tree) | set(api.payload_schemas)
    while pending:
        name = pending.pop()
        if name in schemas:
            continue
        schemas[name] = document["schemas"][name]
        pending |= _refs(schemas[name])
    return {
        "$comment": (
            f"A subset of the {api.title} discovery document (revision {document['revision']}) "
            f"as shipped in {source} (googleapiclient/discovery_cache/documents/{api.document}, Apache-2.0): "
            f"{api.purpose} and the schemas they reference. "
            "Regenerate with scripts/appengine_discovery_subset.py."
        ),
        **{key: document[key] for key in TOP_LEVEL if key in document},
        "resources": tree["resources"],
        "schemas": dict(sorted(schemas.items())),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    for api, methods in ((APPENGINE, METHODS), (MONITORING, MONITORING_METHODS)):
        try:
            version = metadata.version(PACKAGE)
            documents = resources.files("googleapiclient").joinpath("discovery_cache", "documents")
            text = documents.joinpath(api.document).read_text()
        except (metadata.PackageNotFoundError, ModuleNotFoundError) as exc:
            raise SystemExit(f"{PACKAGE} is not installed: pip install -r requirements.txt") from exc
        result = subset(json.loads(text), methods, f"{PACKAGE}=={version}", api)
        api.output.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"wrote {api.output.name}: {len(methods)} methods, {len(result['schemas'])} schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
