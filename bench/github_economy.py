"""Rate-limit economy of the GitHub REST client: a fixed workload read twice.

    .venv/bin/python -m bench.github_economy [--repos 50]

A local server stands in for api.github.com: it answers `GET /repos/{owner}/{repo}` and
`GET /repos/{owner}/{repo}/branches/{branch}` with ETags, honours `If-None-Match` with a 304 that,
as on GitHub, does not count against the rate limit, and reports the limit in its headers. The
workload reads each repository and its default branch's status, twice, through `RestClient` with
a conditional cache. It prints a Markdown table of calls made and calls charged per pass.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import threading

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from shared.github.rest import MemoryConditionalCache, RestClient

LIMIT = 5000


class FakeGitHub:
    def __init__(self, repos: int) -> None:
        self.repos = {f"acme/service-{n:02d}": "main" for n in range(repos)}
        self.remaining = LIMIT
        self.lock = threading.Lock()

    def body(self, path: str) -> dict | None:
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[0] == "repos":
            full_name = f"{parts[1]}/{parts[2]}"
            branch = self.repos.get(full_name)
            if branch and len(parts) == 3:
                return {"full_name": full_name, "default_branch": branch}
            if branch and parts[3:] == ["branches", branch]:
                sha = hashlib.sha256(full_name.encode()).hexdigest()[:40]
                return {"name": branch, "commit": {"sha": sha}, "protected": True}
        return None

    def __call__(self, environ, start_response):
        request = Request(environ)
        body = self.body(request.path)
        if body is None:
            return Response(json.dumps({"message": "Not Found"}), 404)(environ, start_response)
        text = json.dumps(body)
        etag = '"' + hashlib.sha256(text.encode()).hexdigest()[:16] + '"'
        with self.lock:
            not_modified = request.headers.get("If-None-Match") == etag
            if not not_modified:  # a 304 is free on GitHub
                self.remaining -= 1
            headers = {"ETag": etag, "X-RateLimit-Limit": str(LIMIT),
                       "X-RateLimit-Remaining": str(self.remaining),
                       "X-RateLimit-Reset": "4102444800", "Content-Type": "application/json"}
        response = Response("" if not_modified else text, 304 if not_modified else 200, headers)
        return response(environ, start_response)


def run(repos: int) -> list[dict]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log per request
    github = FakeGitHub(repos)
    server = make_server("127.0.0.1", 0, github, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rows = []
    try:
        client = RestClient(f"http://127.0.0.1:{server.server_port}", token=lambda: "t",
                            cache=MemoryConditionalCache(), cache_scope="installation/1")
        for number in (1, 2):
            before_requests, before_304 = client.stats.requests, client.stats.not_modified
            before_remaining = github.remaining
            for full_name in github.repos:
                repo = client.request("GET", f"/repos/{full_name}")
                client.request("GET", f"/repos/{full_name}/branches/{repo['default_branch']}")
            calls = client.stats.requests - before_requests
            free = client.stats.not_modified - before_304
            rows.append({"pass": number, "repos": repos, "calls": calls, "not_modified": free,
                         "charged": before_remaining - github.remaining,
                         "remaining": client.budget})
    finally:
        server.shutdown()
        thread.join(timeout=5)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repos", type=int, default=50)
    rows = run(parser.parse_args().repos)
    print("| pass | repos | API calls | 304 (free) | charged to the rate limit | budget left |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['pass']} | {row['repos']} | {row['calls']} | {row['not_modified']} | "
              f"{row['charged']} | {row['remaining']} |")
    return 0 if rows[1]["charged"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
