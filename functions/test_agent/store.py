"""The test agent's state in Firestore, per repository (`repos/{owner:name}`, see `repo_doc_id`):

- `repos/{id}/flaky/{hash of the name}`: a CI item that failed and then passed on its re-run, with
  `name`, `first_seen`, `last_seen`, `count` (commits it was flaky on), `last_sha`, `last_pull` and
  `recent_shas` (the last RECENT_SHAS commits counted, so a retried turn does not count one twice).
- `repos/{id}/measurements/{sha}`: what the test agent measured on a pull request's head commit,
  `artifacts.baseline_doc`'s map (version, coverage, benchmarks) with `sha`, `pull_number` and
  `measured_at`.
- `repos/{id}/baselines/{ref}` (a `/` in the ref is stored as `:`): the base branch's baseline, the
  same map with `ref`, `sha` (the merge commit), `head_sha` (the merged head whose measurement it is),
  `pull_number` and `updated_at`.

Every Google error becomes a RetryableError, as in `shared.task_store`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from shared.task_store import REPOS, DocumentStore, repo_doc_id

FLAKY = "flaky"
MEASUREMENTS = "measurements"
BASELINES = "baselines"
RECENT_SHAS = 50
MEASURED_PARTS = ("coverage", "benchmarks")


def flaky_doc_id(name: str) -> str:
    """A flaky item's document id: names hold `/` and other characters a document id may not."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:40]


def ref_doc_id(ref: str) -> str:
    """A branch's document id: git refs never hold `:`, document ids never hold `/`."""
    name = ref.removeprefix("refs/heads/").replace("/", ":")
    if not name or name in (".", "..") or (name.startswith("__") and name.endswith("__")):
        return f"ref:{name}"
    return name


def _now() -> datetime:
    return datetime.now(timezone.utc)


class TestStore(DocumentStore):
    __test__ = False  # not a pytest test class, though its name starts with Test

    # ---- references and small helpers ------------------------------------------------------

    def _repo(self, repository: str) -> Any:
        return self._client.collection(REPOS).document(repo_doc_id(repository))

    def _flaky(self, repository: str, name: str) -> Any:
        return self._repo(repository).collection(FLAKY).document(flaky_doc_id(name))

    def _measurement(self, repository: str, sha: str) -> Any:
        return self._repo(repository).collection(MEASUREMENTS).document(sha)

    def _baseline(self, repository: str, ref: str) -> Any:
        return self._repo(repository).collection(BASELINES).document(ref_doc_id(ref))

    # ---- flaky CI items --------------------------------------------------------------------

    def record_flaky(self, repository: str, names: Iterable[str], sha: str, pull_number: int,
                     now: datetime | None = None) -> None:
        """Count each name as flaky once on `sha`; a name already counted on that sha is left alone."""
        moment = now or _now()
        for name in dict.fromkeys(names):
            self._run(self._record_flaky, repository, name, sha, int(pull_number), moment)

    def _record_flaky(self, transaction: Any, repository: str, name: str, sha: str, pull_number: int,
                      now: datetime) -> None:
        ref = self._flaky(repository, name)
        doc = ref.get(transaction=transaction).to_dict() or {}
        recent = [str(s) for s in doc.get("recent_shas") or []]
        if sha in recent:
            return
        transaction.set(ref, {
            "name": name,
            "first_seen": doc.get("first_seen") or now,
            "last_seen": now,
            "count": int(doc.get("count") or 0) + 1,
            "last_sha": sha,
            "last_pull": pull_number,
            "recent_shas": [*recent, sha][-RECENT_SHAS:],
        })

    def flaky(self, repository: str) -> list[dict[str, Any]]:
        """The repository's flaky items, the most often flaky first."""
        collection = self._repo(repository).collection(FLAKY)
        docs = self._call(f"read flaky items of {repository}",
                          lambda: [d.to_dict() or {} for d in collection.stream()])
        return sorted(docs, key=lambda d: (-int(d.get("count") or 0), str(d.get("name") or "")))

    # ---- measurements and baselines --------------------------------------------------------

    def save_measurement(self, repository: str, sha: str, pull_number: int, measurement: Mapping[str, Any],
                         now: datetime | None = None) -> None:
        """What was measured on a head commit (`artifacts.baseline_doc`); a later turn replaces it."""
        doc = {**dict(measurement), "sha": sha, "pull_number": int(pull_number),
               "measured_at": now or _now()}
        self._call(f"write measurement {sha} of {repository}",
                   lambda: self._measurement(repository, sha).set(doc))

    def measurement(self, repository: str, sha: str) -> dict[str, Any] | None:
        return self._call(f"read measurement {sha} of {repository}",
                          lambda: self._measurement(repository, sha).get().to_dict())

    def baseline(self, repository: str, ref: str) -> dict[str, Any] | None:
        return self._call(f"read baseline {ref} of {repository}",
                          lambda: self._baseline(repository, ref).get().to_dict())

    def save_baseline(self, repository: str, ref: str, measurement: Mapping[str, Any], *, sha: str,
                      head_sha: str = "", pull_number: int = 0,
                      now: datetime | None = None) -> dict[str, Any]:
        """Make `measurement` the baseline of `ref`; returns the baseline as written.

        A part the measurement lacks (coverage or benchmarks None: nothing was measured) keeps the
        baseline's previous value, so a pull request whose CI skipped the benchmarks does not erase
        them; `kept` names such parts.
        """
        return self._run(self._save_baseline, repository, ref, dict(measurement), sha, head_sha,
                         int(pull_number), now or _now())

    def _save_baseline(self, transaction: Any, repository: str, ref: str, measurement: dict[str, Any],
                       sha: str, head_sha: str, pull_number: int, now: datetime) -> dict[str, Any]:
        target = self._baseline(repository, ref)
        previous = target.get(transaction=transaction).to_dict() or {}
        doc: dict[str, Any] = {"version": measurement.get("version"), "ref": ref, "sha": sha,
                               "head_sha": head_sha, "pull_number": pull_number, "updated_at": now}
        kept = []
        for part in MEASURED_PARTS:
            value = measurement.get(part)
            if value is None and previous.get(part) is not None and previous.get("version") == doc["version"]:
                value = previous[part]
                kept.append(part)
            doc[part] = value
        doc["kept"] = kept
        transaction.set(target, doc)
        return doc
