"""Issues an agent opens once, found again by a hidden marker when a response was lost.

Creating an issue is not idempotent. An agent that opens one (an incident) puts a marker it
chooses in the body, an HTML comment GitHub does not render, and looks for it before creating:
a retry after a lost answer finds the issue the first attempt opened instead of opening another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SEARCH_PAGES = 3  # the newest 300 issues with the label: an open incident is among them


def find_issue_by_marker(client: Any, repository: str, marker: str, label: str,
                         max_pages: int = SEARCH_PAGES) -> dict[str, Any] | None:
    """The newest issue (not pull request) with `label` whose body holds `marker`, or None."""
    listing = client.paginate(f"/repos/{repository}/issues",
                              {"state": "all", "labels": label, "sort": "created", "direction": "desc"},
                              max_pages=max_pages)
    for issue in listing:
        if isinstance(issue, Mapping) and "pull_request" not in issue \
                and marker in str(issue.get("body") or ""):
            return dict(issue)
    return None
