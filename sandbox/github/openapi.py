"""Validate requests and responses against GitHub's official REST description (the subset we use).

A fake that answers what GitHub cannot, or a request GitHub would reject, fails the test here.
OpenAPI 3.0 schemas are JSON Schema with `nullable`; that is translated before validation.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SUBSET = Path(__file__).resolve().parent / "openapi-subset.json"


def _translate(node: Any) -> Any:
    if isinstance(node, dict):
        out = {k: _translate(v) for k, v in node.items() if k != "nullable"}
        if isinstance(out.get("$ref"), str) and out["$ref"].startswith("#/"):
            out["$ref"] = "urn:github" + out["$ref"]  # absolute, so inline schemas resolve too
        if node.get("nullable") is True:
            return {"anyOf": [out, {"type": "null"}]}
        return out
    if isinstance(node, list):
        return [_translate(v) for v in node]
    return node


@functools.cache
def spec() -> dict[str, Any]:
    return _translate(json.loads(SUBSET.read_text()))


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource("urn:github", Resource(contents=spec(), specification=DRAFT202012))


@functools.cache
def _routes() -> list[tuple[re.Pattern[str], str, str]]:
    routes = []
    for path in spec()["paths"]:
        # `contents/{path}` and `git/refs/{ref}` span segments (x-multi-segment); a contents path
        # may be empty (the root listing).
        multi = path.replace("{path}", "\0").replace("{ref}", "\1")
        pattern = "^" + re.sub(r"\{[^}]+\}", "[^/]+", multi).replace("\0", ".*").replace("\1", ".+") + "$"
        for method in spec()["paths"][path]:
            routes.append((re.compile(pattern), method, path))
    return routes


def operation(method: str, url_path: str) -> dict[str, Any]:
    path = url_path.split("?", 1)[0]
    for pattern, route_method, template in _routes():
        if route_method == method.lower() and pattern.match(path):
            return spec()["paths"][template][route_method]
    raise AssertionError(f"{method} {path} is not an operation this project uses (openapi-subset.json)")


def _validate(schema: dict[str, Any], value: Any, what: str) -> None:
    validator = jsonschema.Draft202012Validator(
        schema,
        registry=_registry(),
    )
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
    if errors:
        raise AssertionError(f"{what} does not match GitHub's description: {errors[0].message} "
                             f"at {list(errors[0].path)}")


def validate_request(method: str, url_path: str, body: Any) -> None:
    op = operation(method, url_path)
    content = (op.get("requestBody") or {}).get("content", {}).get("application/json")
    if content is None:
        assert body in (None, b"", {}), f"{method} {url_path} takes no body"
        return
    if body is None:
        assert not op["requestBody"].get("required"), f"{method} {url_path} needs a body"
        return
    _validate(content["schema"], body, f"request {method} {url_path}")


def validate_response(method: str, url_path: str, status: int, body: Any) -> None:
    op = operation(method, url_path)
    response = op["responses"].get(str(status))
    assert response is not None, f"{method} {url_path} never answers {status}"
    if "$ref" in response:  # a shared response, #/components/responses/<name>
        name = response["$ref"].rsplit("/", 1)[-1]
        response = spec()["components"]["responses"][name]
    content = (response.get("content") or {}).get("application/json")
    if content is None:
        assert body in (None, b"", ""), f"{method} {url_path} {status} has no body"
        return
    _validate(content["schema"], body, f"response {status} to {method} {url_path}")


def example(method: str, url_path: str, status: int, name: str | None = None) -> Any:
    """GitHub's own documented example body for a response, validated, for fakes to answer with."""
    op = operation(method, url_path)
    content = op["responses"][str(status)]["content"]["application/json"]
    examples = content["examples"]
    chosen = examples[name] if name else next(iter(examples.values()))
    if "$ref" in chosen:
        chosen = spec()["components"]["examples"][chosen["$ref"].rsplit("/", 1)[-1]]
    value = json.loads(json.dumps(chosen["value"]))
    validate_response(method, url_path, status, value)
    return value
