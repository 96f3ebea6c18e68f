"""Shaping the sandbox's state into webhook payloads, on the shape of GitHub's own examples.

A webhook object and its REST counterpart share most fields but not all: the webhook schemas
forbid the fields they do not list. `adapt` therefore keeps exactly the keys of the official
example and takes each value from the sandbox's REST answer where it has one.
"""

from __future__ import annotations

from typing import Any

# REST-only fields that appear inside objects webhooks otherwise share with the REST API.
REST_ONLY = frozenset({"user_view_type"})
# The fields of an App object in a webhook (the REST answer carries more).
APP_FIELDS = ("id", "slug", "node_id", "owner", "name", "description", "external_url", "html_url",
              "created_at", "updated_at", "permissions", "events")
# Events GitHub delivers to every App whatever it subscribed to, so never listed among its events.
ALWAYS_DELIVERED = frozenset({"installation", "installation_repositories", "github_app_authorization"})


def strip(value: Any) -> Any:
    """A copy of `value` without the REST-only fields, at any depth."""
    if isinstance(value, dict):
        return {key: strip(item) for key, item in value.items() if key not in REST_ONLY}
    if isinstance(value, list):
        return [strip(item) for item in value]
    return value


def adapt(value: Any, template: Any) -> Any:
    """`value` on the shape of `template`: the template's keys, with the value's data where it has it.

    Lists of objects follow the template's first item; where the template has no item (or no
    object) to follow, the value is taken as it is.
    """
    if isinstance(template, dict) and isinstance(value, dict):
        return {key: adapt(value[key], template[key]) if key in value else template[key] for key in template}
    if isinstance(template, list) and isinstance(value, list) and template and isinstance(template[0], dict):
        return [adapt(item, template[0]) for item in value]
    return strip(value)


def set_present(target: dict[str, Any], **values: Any) -> dict[str, Any]:
    """Overwrite only the keys `target` already has."""
    for key, value in values.items():
        if key in target:
            target[key] = value
    return target


def retarget(value: Any, old: str, new: str) -> Any:
    """Replace one repository's full name by another in every string (the example's urls)."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, dict):
        return {key: retarget(item, old, new) for key, item in value.items()}
    if isinstance(value, list):
        return [retarget(item, old, new) for item in value]
    return value


def subscribed(events: Any) -> list[str]:
    return sorted(event for event in events if event not in ALWAYS_DELIVERED)


def worst(conclusions: list[str | None]) -> str | None:
    """A check suite's conclusion from its runs' conclusions, as GitHub ranks them."""
    ranking = ("action_required", "cancelled", "timed_out", "failure", "stale", "success", "neutral",
               "skipped")
    present = [c for c in conclusions if c]
    for conclusion in ranking:
        if conclusion in present:
            return conclusion
    return None
