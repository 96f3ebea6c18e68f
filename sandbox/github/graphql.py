"""GitHub's GraphQL API in the sandbox: queries parsed, validated and executed with graphql-core
against `graphql-subset.graphql` (the part of GitHub's official schema the project uses).

GitHub answers 200 for a query it cannot run (a syntax or validation error) with `errors` and no
`data`; an error of one field (`NOT_FOUND` for a repository, `FORBIDDEN` for a field the token
may not read) comes with the rest of the data, the field null, and GitHub's `type` and `path`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

SUBSET = Path(__file__).with_name("graphql-subset.graphql")


class FieldError(Exception):
    """A resolver's refusal, answered as GitHub does: `{"type", "path", "locations", "message"}`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@functools.cache
def schema() -> Any:
    from graphql import build_schema

    return build_schema(SUBSET.read_text())


def _error(error: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {}
    original = getattr(error, "original_error", None)
    if isinstance(original, FieldError):
        answer["type"] = original.kind
    if error.path:
        answer["path"] = list(error.path)
    if error.locations:
        answer["locations"] = [{"line": spot.line, "column": spot.column} for spot in error.locations]
    answer["message"] = original.message if isinstance(original, FieldError) else error.message
    return answer


def check(text: str) -> tuple[Any, list[dict[str, Any]]]:
    """The parsed document, or GitHub's errors for a query that cannot run."""
    from graphql import GraphQLError, parse, validate

    try:
        document = parse(text)
    except GraphQLError as exc:
        return None, [_error(exc)]
    errors = validate(schema(), document)
    return document, [_error(e) for e in errors]


def execute(document: Any, variables: dict[str, Any] | None, operation_name: str | None,
            root: dict[str, Any]) -> dict[str, Any]:
    """Run a valid document; resolvers are `root`'s values (callables take `info` and the arguments)."""
    from graphql import execute as run

    result = run(schema(), document, root_value=root, variable_values=variables or {},
                 operation_name=operation_name)
    answer: dict[str, Any] = {"data": result.data}
    if result.errors:
        answer["errors"] = [_error(e) for e in result.errors]
    return answer
