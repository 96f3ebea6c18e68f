"""The `dashboard` HTTP function: read-only pages over Firestore, rendered on the server.

Routes (GET and HEAD only; anything else is 405 with `Allow`):

- `/`: the overview (agents, the task queue, deployments, incidents, repo health, KPIs and trends);
- `/tasks/{id}`: one task, its history and what it waits on (the links the agents post);
- `/audit?task={id}`: the task's audit trail;
- `/healthz`: `ok`, without reading Firestore.

Templates are Jinja2 with autoescape on for every template. Every response carries a strict
Content-Security-Policy: no script at all, the one inline stylesheet allowed by its hash, images only
as data: URLs; and `nosniff`, `no-store`, `no-referrer`, no framing. Access control is not here: the
function is deployed without public invokers, so Cloud Run's IAM admits only the configured viewers.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from functions.dashboard import views
from shared.errors import RetryableError

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
ALLOWED = "GET, HEAD"
_TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+=-]{0,299}$")


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["status_class"] = lambda status: re.sub(r"[^a-z_]", "", str(status).lower())
    return env


def stylesheet() -> str:
    return (TEMPLATES / "style.css").read_text()


def style_hash(css: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()


def content_security_policy(css: str) -> str:
    return (f"default-src 'none'; style-src '{style_hash(css)}'; img-src data:; base-uri 'none'; "
            "form-action 'none'; frame-ancestors 'none'")


class Dashboard:
    """The request handler; `reader` is built on first use (`functions.dashboard.reader.DashboardReader`)."""

    def __init__(self, reader: Callable[[], Any]) -> None:
        self._reader = reader
        self._env = _environment()
        self._css = stylesheet()
        self._headers = {
            "Content-Security-Policy": content_security_policy(self._css),
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
        }

    def headers(self, content_type: str = "text/html; charset=utf-8", **extra: str) -> dict[str, str]:
        return {**self._headers, "Content-Type": content_type, **extra}

    def render(self, template: str, **values: Any) -> str:
        return self._env.get_template(template).render(css=self._css, **values)

    def __call__(self, request: Any) -> tuple[str, int, dict[str, str]]:
        method = str(getattr(request, "method", "GET")).upper()
        if method not in ("GET", "HEAD"):
            body = self.render("error.html", base=_base(request), status=405, title="Method not allowed",
                               message="The dashboard is read-only: it answers GET and HEAD only.")
            return body, 405, self.headers(Allow=ALLOWED)
        status, body, content_type = self._route(request)
        return ("" if method == "HEAD" else body), status, self.headers(content_type)

    def _route(self, request: Any) -> tuple[int, str, str]:
        path = str(getattr(request, "path", "/") or "/")
        base = _base(request)
        if path == "/healthz":
            return 200, "ok\n", "text/plain; charset=utf-8"
        try:
            if path in ("/", ""):
                page = views.overview(self._reader().snapshot())
                return 200, self.render("overview.html", base=base, page=page), "text/html; charset=utf-8"
            if path.startswith("/tasks/"):
                task_id = path[len("/tasks/"):]
                if not _TASK_ID.match(task_id):
                    return self._not_found(base, "No such task.")
                reader = self._reader()
                task, related = reader.task(task_id)
                page = views.task_page(task_id, task, related, reader.now())
                return (200 if page.found else 404, self.render("task.html", base=base, page=page),
                        "text/html; charset=utf-8")
            if path == "/audit":
                task_id = str(_args(request).get("task") or "")
                if not _TASK_ID.match(task_id):
                    return self._not_found(base, "Name a task: /audit?task=ID.")
                page = views.audit_page(task_id, self._reader().audit(task_id))
                return 200, self.render("audit.html", base=base, page=page), "text/html; charset=utf-8"
        except RetryableError as exc:
            log.warning("dashboard: firestore unavailable: %s", exc)
            body = self.render("error.html", base=base, status=503, title="Firestore is unavailable",
                               message="The dashboard could not read Firestore just now; try again shortly.")
            return 503, body, "text/html; charset=utf-8"
        return self._not_found(base, "There is no such page.")

    def _not_found(self, base: str, message: str) -> tuple[int, str, str]:
        return 404, self.render("error.html", base=base, status=404, title="Not found", message=message), \
            "text/html; charset=utf-8"


def _args(request: Any) -> Mapping[str, Any]:
    args = getattr(request, "args", None)
    return args if isinstance(args, Mapping) or hasattr(args, "get") else {}


def _base(request: Any) -> str:
    """Where the pages live: "" at the root, or the prefix the function is mounted under."""
    root = str(getattr(request, "script_root", "") or "").rstrip("/")
    return root if re.fullmatch(r"(/[A-Za-z0-9_.-]+)*", root) else ""
