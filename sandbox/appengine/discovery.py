"""The Google API methods the sandbox serves, and validation of requests and responses against them.

The sources of truth are the subsets beside this file: `appengine-v1-subset.json` (the App Engine Admin
API) and `monitoring-v3-subset.json` (Cloud Monitoring's `timeSeries.list`), cut from Google's discovery
documents by scripts/appengine_discovery_subset.py. Discovery schemas are translated to JSON Schema:
`type`, `properties`, `items`, `additionalProperties`, `$ref`, `enum` and `format`. An object may hold
only the properties its schema names, and a property of type `any` holds anything.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

SUBSET_PATH = Path(__file__).resolve().with_name("appengine-v1-subset.json")
MONITORING_SUBSET_PATH = Path(__file__).resolve().with_name("monitoring-v3-subset.json")
TYPE_URL_PREFIX = "type.googleapis.com/"
# The proto message each "@type" in an Operation's metadata or response names, and its discovery schema.
PAYLOAD_TYPES = {
    "type.googleapis.com/google.appengine.v1.OperationMetadataV1": "OperationMetadataV1",
    "type.googleapis.com/google.appengine.v1.Version": "Version",
    "type.googleapis.com/google.appengine.v1.Service": "Service",
    "type.googleapis.com/google.protobuf.Empty": "Empty",
}
_INT32 = {"minimum": -(2**31), "maximum": 2**31 - 1}
# Each discovery (type, format) pair, as JSON Schema keywords. A pair not listed fails at load, so a
# regenerated subset with a new format is noticed instead of silently accepting anything.
FORMATS: dict[tuple[str, str], dict[str, Any]] = {
    ("integer", "int32"): _INT32,
    ("integer", "uint32"): {"minimum": 0, "maximum": 2**32 - 1},
    ("string", "int64"): {"pattern": r"^-?[0-9]+$"},
    ("string", "uint64"): {"pattern": r"^[0-9]+$"},
    ("number", "double"): {},
    ("number", "float"): {},
    ("string", "byte"): {"pattern": r"^[A-Za-z0-9+/_-]*={0,2}$"},
    ("string", "google-datetime"): {
        "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
                   r"(Z|[+-][0-9]{2}:[0-9]{2})$"
    },
    ("string", "google-duration"): {"pattern": r"^-?[0-9]+(\.[0-9]{1,9})?s$"},
    ("string", "google-fieldmask"): {"pattern": r"^([a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z_][a-zA-Z0-9_]*)*)?"
                                                r"(,[a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z_][a-zA-Z0-9_]*)*)*$"},
}


class InvalidRequest(ValueError):
    """A request the discovery document does not allow. The message is what the API would answer."""


@dataclass(frozen=True)
class Method:
    id: str
    http_method: str
    path: str
    pattern: re.Pattern[str]
    parameters: dict[str, dict[str, Any]]
    request: str | None
    response: str | None


def translate(node: dict[str, Any]) -> dict[str, Any]:
    """One discovery schema as JSON Schema; `$ref`s point into `#/$defs`."""
    if "$ref" in node:
        return {"$ref": f"#/$defs/{node['$ref']}"}
    kind = node.get("type")
    if kind == "any":
        return {}
    out: dict[str, Any] = {"type": kind} if kind else {}
    if "enum" in node:
        out["enum"] = list(node["enum"])
    if "format" in node:
        key = (kind, node["format"])
        if key not in FORMATS:
            raise ValueError(f"no translation for discovery format {key}")
        out.update(FORMATS[key])
    if kind == "object":
        out["properties"] = {name: translate(value) for name, value in node.get("properties", {}).items()}
        extra = node.get("additionalProperties")
        out["additionalProperties"] = translate(extra) if extra is not None else False
    if kind == "array":
        out["items"] = translate(node["items"])
    return out


def _methods_of(resource: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield from resource.get("methods", {}).values()
    for child in resource.get("resources", {}).values():
        yield from _methods_of(child)


def _path_pattern(template: str) -> re.Pattern[str]:
    """A regex for a URI template: `{name}` is one path segment, `{+name}` (reserved expansion) any."""
    parts = re.split(r"(\{[^}]+\})", template)
    regex = ""
    for part in parts:
        if part.startswith("{+"):
            regex += f"(?P<{part[2:-1]}>.+)"
        elif part.startswith("{"):
            regex += f"(?P<{part[1:-1]}>[^/]+)"
        else:
            regex += re.escape(part)
    return re.compile(f"^/{regex}$")


def _template(entry: dict[str, Any]) -> str:
    """The flat path when every variable in it is a declared parameter, else the `{+name}` path.

    App Engine declares `appsId`, `servicesId`... for its flat paths; Monitoring declares only `name`
    (`v3/{+name}/timeSeries`), so its flat path's `projectsId` is no parameter at all.
    """
    variables = re.findall(r"\{([^}]+)\}", entry["flatPath"])
    if all(variable in entry.get("parameters", {}) for variable in variables):
        return entry["flatPath"]
    return entry["path"]


def _where(schema_name: str, path: Iterable[Any]) -> str:
    where = schema_name[:1].lower() + schema_name[1:]
    for part in path:
        where += f"[{part}]" if isinstance(part, int) else f".{part}"
    return where


def _describe(error: jsonschema.ValidationError, schema_name: str) -> str:
    where = _where(schema_name, error.absolute_path)
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed)
        return f"Invalid JSON payload received. Unknown name {json.dumps(unknown[0])} at '{where}': " \
               "Cannot find field."
    return f"Invalid value at '{where}': {error.message}"


class Discovery:
    """The methods and schemas of one discovery document."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.schemas: dict[str, dict[str, Any]] = document["schemas"]
        self._defs = {name: translate(schema) for name, schema in self.schemas.items()}
        self.global_parameters: dict[str, dict[str, Any]] = document.get("parameters", {})
        self.methods: dict[str, Method] = {}
        for entry in _methods_of(document):
            template = _template(entry)
            self.methods[entry["id"]] = Method(
                id=entry["id"],
                http_method=entry["httpMethod"],
                path=template,
                pattern=_path_pattern(template),
                parameters=entry.get("parameters", {}),
                request=entry.get("request", {}).get("$ref"),
                response=entry.get("response", {}).get("$ref"),
            )

    @classmethod
    @functools.cache
    def load(cls, path: Path = SUBSET_PATH) -> Discovery:
        """The subset at `path` (by default the App Engine Admin API's), parsed once per process."""
        return cls(json.loads(path.read_text()))

    @classmethod
    def monitoring(cls) -> Discovery:
        return cls.load(MONITORING_SUBSET_PATH)

    @functools.cache  # noqa: B019 - one instance per document, alive for the process
    def validator(self, schema_name: str) -> jsonschema.Draft202012Validator:
        if schema_name not in self._defs:
            raise KeyError(f"schema {schema_name} is not in the subset")
        return jsonschema.Draft202012Validator({"$defs": self._defs, "$ref": f"#/$defs/{schema_name}"})

    def match(self, http_method: str, path: str) -> tuple[Method, dict[str, str]] | None:
        for method in self.methods.values():
            found = method.pattern.match(path)
            if found and method.http_method == http_method:
                return method, found.groupdict()
        return None

    def path_exists(self, path: str) -> bool:
        return any(method.pattern.match(path) for method in self.methods.values())

    def schema_errors(self, schema_name: str, value: Any) -> list[str]:
        """Every way `value` breaks the named schema, as the API would word it; empty when it is valid."""
        errors = sorted(self.validator(schema_name).iter_errors(value), key=lambda e: list(e.absolute_path))
        return [_describe(error, schema_name) for error in errors]

    def check_body(self, schema_name: str, body: Any) -> None:
        errors = self.schema_errors(schema_name, body)
        if errors:
            raise InvalidRequest(errors[0])

    def check_parameters(self, method: Method, path_values: dict[str, str],
                         query: list[tuple[str, str]]) -> dict[str, Any]:
        """A request's path and query parameters, typed; InvalidRequest on any the method forbids.

        A repeated parameter's value is the list of every value given.
        """
        values: dict[str, Any] = {}
        for name, value in path_values.items():
            if not value:
                raise InvalidRequest(f"path parameter {name} is empty")
            values[name] = self._typed(name, method.parameters[name], value)
        seen: set[str] = set()
        for name, raw in query:
            spec = method.parameters.get(name) or self.global_parameters.get(name)
            if spec is None or spec.get("location") != "query":
                raise InvalidRequest(f"Invalid JSON payload received. Unknown name {json.dumps(name)}: "
                                     "Cannot bind query parameter.")
            if name in seen and not spec.get("repeated"):
                raise InvalidRequest(f"query parameter {name} is given more than once")
            seen.add(name)
            if spec.get("repeated"):
                values.setdefault(name, []).append(self._typed(name, spec, raw))
            else:
                values[name] = self._typed(name, spec, raw)
        for name, spec in method.parameters.items():
            if spec.get("required") and name not in values:
                raise InvalidRequest(f"required parameter {name} is missing")
        return values

    def output_only(self, schema_name: str) -> set[str]:
        """The properties the server sets; the API ignores them on input."""
        properties = self.schemas[schema_name].get("properties", {})
        return {name for name, spec in properties.items()
                if spec.get("readOnly") or "@OutputOnly" in spec.get("description", "")}

    def full_view_only(self, schema_name: str) -> set[str]:
        """The properties returned only with `view=FULL`."""
        properties = self.schemas[schema_name].get("properties", {})
        return {name for name, spec in properties.items()
                if "Only returned in GET requests if view=FULL is set" in spec.get("description", "")}

    def payload_errors(self, operation: dict[str, Any]) -> list[str]:
        """Check an Operation's typed `metadata` and `response` against the schemas their "@type" names."""
        errors: list[str] = []
        for field in ("metadata", "response"):
            payload = operation.get(field)
            if payload is None:
                continue
            type_url = payload.get("@type")
            schema_name = PAYLOAD_TYPES.get(type_url)
            if schema_name is None:
                errors.append(f"operation.{field} has an unknown @type {type_url!r}")
                continue
            body = {key: value for key, value in payload.items() if key != "@type"}
            errors += [f"operation.{field}: {error}" for error in self.schema_errors(schema_name, body)]
        return errors

    def _typed(self, name: str, spec: dict[str, Any], raw: str) -> Any:
        kind = spec.get("type", "string")
        value: Any = raw
        if kind == "integer":
            if not re.fullmatch(r"-?[0-9]+", raw):
                raise InvalidRequest(f"Invalid value at '{name}' (TYPE_INT32), \"{raw}\"")
            value = int(raw)
        elif kind == "boolean":
            if raw not in ("true", "false"):
                raise InvalidRequest(f"Invalid value at '{name}' (TYPE_BOOL), \"{raw}\"")
            value = raw == "true"
        schema = translate({key: spec[key] for key in ("type", "enum", "format") if key in spec})
        error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
        if error is not None:
            raise InvalidRequest(f"Invalid value at '{name}', \"{raw}\": {error.message}")
        if "pattern" in spec and not re.search(spec["pattern"], raw):
            raise InvalidRequest(f"Invalid value at '{name}', \"{raw}\": does not match {spec['pattern']}")
        return value
