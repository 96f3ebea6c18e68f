"""Regenerate sandbox/github/graphql-subset.graphql from GitHub's official GraphQL schema.

The GitHub sandbox validates and executes every GraphQL query against the part of the schema the
project uses; a test validates the project's queries against it too. The full schema is 1.2 MB;
this keeps the fields in FIELDS, every argument of those fields with the input types, enums and
scalars the arguments reach, the return types' scalars and enums, and the interfaces in FIELDS.
Usage:

    npm pack @octokit/graphql-schema@15.26.1 && tar xzf octokit-graphql-schema-15.26.1.tgz
    python scripts/github_graphql_subset.py package/schema.graphql [--descriptions]

Add a field to FIELDS (and its object type, if new) when code starts asking for it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

SOURCE_PACKAGE = "@octokit/graphql-schema@15.26.1"
# type -> the fields kept; an output type a kept field returns must be here (or a scalar or enum).
FIELDS: dict[str, tuple[str, ...]] = {
    "Query": ("repository", "rateLimit"),
    "RateLimit": ("cost", "limit", "nodeCount", "remaining", "resetAt", "used"),
    "Repository": ("databaseId", "defaultBranchRef", "isArchived", "issues", "nameWithOwner",
                   "pullRequests", "pushedAt", "updatedAt", "vulnerabilityAlerts"),
    "Ref": ("name", "target"),
    "GitObject": ("oid",),
    "Commit": ("oid", "statusCheckRollup"),
    "StatusCheckRollup": ("state",),
    "IssueConnection": ("totalCount",),
    "PullRequestConnection": ("totalCount",),
    "RepositoryVulnerabilityAlertConnection": ("totalCount",),
}
OUTPUT = Path(__file__).resolve().parent.parent / "sandbox" / "github" / "graphql-subset.graphql"
BUILT_IN = frozenset({"String", "Int", "Float", "Boolean", "ID"})


def _named(type_node: Any) -> str:
    while not hasattr(type_node, "name") or type_node.name is None or not hasattr(type_node.name, "value"):
        type_node = type_node.type
    return type_node.name.value


def subset(sdl: str, keep_descriptions: bool = False) -> str:
    from graphql import build_ast_schema, parse, print_ast
    from graphql.language import (
        DirectiveDefinitionNode,
        DocumentNode,
        EnumTypeDefinitionNode,
        InputObjectTypeDefinitionNode,
        InterfaceTypeDefinitionNode,
        ObjectTypeDefinitionNode,
        ScalarTypeDefinitionNode,
    )

    document = parse(sdl, no_location=True)
    definitions = {d.name.value: d for d in document.definitions if hasattr(d, "name") and d.name
                   and not isinstance(d, DirectiveDefinitionNode)}
    missing = [f"{t}.{f}" for t, names in FIELDS.items() for f in names
               if t not in definitions or f not in {x.name.value for x in definitions[t].fields}]
    if missing:
        raise SystemExit(f"fields not in the schema: {missing}")
    kept: dict[str, Any] = {}
    pending: list[str] = []

    def strip(node: Any, **changes: Any) -> Any:
        """A copy of `node` without directives (and descriptions), with `changes`."""
        changes.setdefault("directives", ())
        if not keep_descriptions and "description" in node.keys:
            changes["description"] = None
        return node.__class__(**{**{key: getattr(node, key) for key in node.keys}, **changes})

    for type_name, names in FIELDS.items():
        node = definitions[type_name]
        chosen = []
        for field in node.fields:
            if field.name.value not in names:
                continue
            returned = _named(field.type)
            target = definitions.get(returned)
            composite = isinstance(target, ObjectTypeDefinitionNode | InterfaceTypeDefinitionNode)
            if composite and returned not in FIELDS:
                raise SystemExit(f"{type_name}.{field.name.value} returns {returned}: add it to FIELDS")
            pending.append(returned)
            arguments = []
            for argument in field.arguments or ():
                pending.append(_named(argument.type))
                arguments.append(strip(argument))
            chosen.append(strip(field, arguments=tuple(arguments)))
        interfaces = tuple(i for i in node.interfaces or () if i.name.value in FIELDS)
        kept[type_name] = strip(node, fields=tuple(chosen), interfaces=interfaces)
    while pending:
        name = pending.pop()
        if name in kept or name in BUILT_IN:
            continue
        node = definitions[name]
        if isinstance(node, InputObjectTypeDefinitionNode):
            inputs = tuple(strip(f) for f in node.fields)
            pending.extend(_named(f.type) for f in inputs)
            kept[name] = strip(node, fields=inputs)
        elif isinstance(node, EnumTypeDefinitionNode):
            kept[name] = strip(node, values=tuple(strip(v) for v in node.values))
        elif isinstance(node, ScalarTypeDefinitionNode):
            kept[name] = strip(node)
        else:
            raise SystemExit(f"{name} is reached but is not an input, enum or scalar: add it to FIELDS")
    order = [*FIELDS, *sorted(set(kept) - set(FIELDS))]
    result = DocumentNode(definitions=tuple(kept[name] for name in order))
    build_ast_schema(result)  # the subset is a schema of its own
    header = (f"# The part of GitHub's GraphQL schema the project uses, from the npm package\n"
              f"# {SOURCE_PACKAGE} (schema.graphql), MIT licence, Copyright (c) GitHub.\n"
              f"# Regenerate it with scripts/github_graphql_subset.py; do not edit by hand.\n\n")
    return header + print_ast(result) + "\n"


def main(argv: list[str]) -> int:
    arguments = [a for a in argv[1:] if not a.startswith("--")]
    if len(arguments) != 1 or set(argv[1:]) - {arguments[0], "--descriptions"}:
        print(__doc__, file=sys.stderr)
        return 2
    text = subset(Path(arguments[0]).read_text(), keep_descriptions="--descriptions" in argv)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.name}: {sum(map(len, FIELDS.values()))} fields of {len(FIELDS)} types")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
