"""Check runs created exactly once, even when a response is lost.

A POST that creates a check run is not idempotent, but a check run carries an `external_id` we
choose (the task id). Before creating, look it up among the commit's runs of that name; after a
lost response, the retry finds the run the first attempt created instead of making a second.
"""

from __future__ import annotations

from typing import Any

from shared.github.rest import RestClient, ServerError


def find_check_run(client: RestClient, repository: str, head_sha: str, name: str,
                   external_id: str) -> dict[str, Any] | None:
    listing = client.request("GET", f"/repos/{repository}/commits/{head_sha}/check-runs",
                             params={"check_name": name, "filter": "all", "per_page": 100})
    for run in listing.get("check_runs", []):
        if run.get("external_id") == external_id:
            return run
    return None


def create_check_run_once(client: RestClient, repository: str, head_sha: str, name: str,
                          external_id: str, **fields: Any) -> dict[str, Any]:
    existing = find_check_run(client, repository, head_sha, name, external_id)
    if existing is not None:
        return existing
    body = {"name": name, "head_sha": head_sha, "external_id": external_id, **fields}
    try:
        return client.request("POST", f"/repos/{repository}/check-runs", json_body=body)
    except ServerError:
        # The run may exist even though we never heard back: look before trying again.
        existing = find_check_run(client, repository, head_sha, name, external_id)
        if existing is not None:
            return existing
        return client.request("POST", f"/repos/{repository}/check-runs", json_body=body)
