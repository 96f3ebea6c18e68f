"""Regenerate sandbox/appengine/appengine-v1-subset.json from the App Engine Admin API discovery document.

The App Engine sandbox validates every request it receives, and every response it returns, against the
methods the deploy agent calls. The source is the v1 discovery document shipped in
google-api-python-client (the same file `discovery.build(..., static_discovery=True)` reads). This keeps
those methods, the global parameters, and the schemas they reference. Usage:

    pip install -r requirements.txt
    python scripts/appengine_discovery_subset.py

Add a method id to METHODS when code starts calling a new App Engine method.
"""

from __future__ import annotations

import json
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import Any

PACKAGE = "google-api-python-client"
DOCUMENT = "appengine.v1.json"
METHODS = (
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
OUTPUT = Path(__file__).resolve().parent.parent / "sandbox" / "appengine" / "appengine-v1-subset.json"


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


def subset(document: dict[str, Any], methods: tuple[str, ...], source: str) -> dict[str, Any]:
    tree = _prune({"resources": document["resources"]}, methods)
    missing = set(methods) - _method_ids(tree)
    if missing:
        raise SystemExit(f"methods not in the discovery document: {sorted(missing)}")
    schemas: dict[str, Any] = {}
    pending = _refs(tree) | set(PAYLOAD_SCHEMAS)
    while pending:
        name = pending.pop()
        if name in schemas:
            continue
        schemas[name] = document["schemas"][name]
        pending |= _refs(schemas[name])
    return {
        "$comment": (
            f"A subset of the App Engine Admin API v1 discovery document (revision {document['revision']}) "
            f"as shipped in {source} (googleapiclient/discovery_cache/documents/{DOCUMENT}, Apache-2.0): "
            "the methods the deploy agent calls and the schemas they reference. "
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
    try:
        version = metadata.version(PACKAGE)
        documents = resources.files("googleapiclient").joinpath("discovery_cache", "documents")
        text = documents.joinpath(DOCUMENT).read_text()
    except (metadata.PackageNotFoundError, ModuleNotFoundError) as exc:
        raise SystemExit(f"{PACKAGE} is not installed: pip install -r requirements.txt") from exc
    result = subset(json.loads(text), METHODS, f"{PACKAGE}=={version}")
    OUTPUT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUTPUT.name}: {len(METHODS)} methods, {len(result['schemas'])} schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
