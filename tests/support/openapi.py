"""GitHub's REST description (the subset the project uses), for tests: the sandbox's validator."""

from sandbox.github.openapi import (
    SUBSET,
    example,
    operation,
    spec,
    validate_request,
    validate_response,
)

__all__ = ["SUBSET", "example", "operation", "spec", "validate_request", "validate_response"]
