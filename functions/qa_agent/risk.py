"""The QA agent's risk report for a pull request: deterministic, explainable, pure.

`assess` takes the pull request (title, body, author), its files as GitHub's "list pull request
files" API returns them, and the commit count, and returns a RiskReport: a score from 0 to 100, a
level, and one reason line per finding, each with the points it adds. Nothing is random and
nothing depends on the clock or the environment, so the same input always gives the same report.

Scoring (POINTS below; the score is the sum, capped at 100):

    code                        points  when
    secret                          50  a credential in an added line (the check fails whatever the score)
    protected                       30  a touched path (or a renamed file's old path) matches protected_paths
    size.large                      25  at least size_large changed lines (additions + deletions)
    migrations                      20  a database migration is touched
    tests.missing                   20  source files changed and no test file did
    size.truncated                  15  GitHub's listing stopped at 3000 files: the analysis is partial
    size.medium                     10  more than size_small changed lines, fewer than size_large
    dependencies                    10  a dependency manifest adds, removes or changes a package
    issue.unlinked                  10  the body links no issue with a closing keyword
    analysis.partial                10  more than MAX_FILES files or MAX_PATCH_BYTES of patch text
    checklist.unchecked     3 per item  unchecked task list items, at most 10 (less than missing tests)
    size.files                       5  more than MANY_FILES files
    dependencies.downgraded          5  a package is downgraded or removed
    dependencies.lockfile            5  a lockfile changed while no manifest did
    patch.missing                    5  an added or modified file has no patch (binary or too large)
    size.small, tests.changed,       0  stated so the report explains what was found, not only what is wrong
    issue.linked, checklist.complete

Levels: high at config.high_risk_score or more, medium at MEDIUM_SCORE (30) or more, else low. A high
score needs a human's approval; a secret fails the check instead (approval cannot make it safe).

Secrets are looked for in added lines only: removing a secret is good. The patterns are precise
(a prefix, an exact alphabet and length, word boundaries), so the same patterns written as regex
source (`ghp_[A-Za-z0-9]{36}`) and placeholders (`ghp_xxxx...`, `AKIAIOSFODNN7EXAMPLE`) are not
flagged. A PEM header counts only when key material follows it. A finding names the file, the line
in the new file and the kind of credential, never the value; every piece of pull request text the
report keeps (paths, package names, versions) has credentials replaced by `[redacted]`.

File names, package names and versions are chosen by whoever opens the pull request: the Markdown
neutralises every one of them, so they cannot mention people, link, or break a table or a list.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from functions.code_agent.changes import REDACTED, glob_match, protected_by
from functions.test_agent.gates import neutralise
from shared.errors import InvalidInput

MAX_FILES = 3000  # GitHub's listing stops at 3000 files too
MAX_PATCH_BYTES = 2 * 1024 * 1024
MAX_BODY_CHARS = 65_536  # GitHub caps pull request bodies at 65,536 characters
MAX_LISTED = 100  # entries kept in each of the report's lists
MAX_IN_TEXT = 5  # names quoted in one reason line
MAX_PATH_CHARS = 1000
MAX_PACKAGE_CHARS = 214  # npm's limit, the longest of the ecosystems'
MAX_VERSION_CHARS = 100
MAX_SUMMARY_CHARS = 60_000  # a check run summary may hold 65,535 characters
MAX_TITLE_CHARS = 255
MEDIUM_SCORE = 30
MANY_FILES = 50
MAX_SCORE = 100

POINTS: Mapping[str, int] = {
    "secret": 50,
    "protected": 30,
    "size.large": 25,
    "migrations": 20,
    "tests.missing": 20,
    "size.truncated": 15,
    "size.medium": 10,
    "dependencies": 10,
    "issue.unlinked": 10,
    "analysis.partial": 10,
    "size.files": 5,
    "dependencies.downgraded": 5,
    "dependencies.lockfile": 5,
    "patch.missing": 5,
    "size.small": 0,
    "tests.changed": 0,
    "issue.linked": 0,
    "checklist.complete": 0,
}
POINTS_PER_UNCHECKED = 3
MAX_CHECKLIST_POINTS = 10

Level = Literal["low", "medium", "high"]
ChangeKind = Literal["added", "upgraded", "downgraded", "removed", "changed"]
Conclusion = Literal["success", "failure", "action_required"]


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class PullFile:
    """One entry of GitHub's "list pull request files"; `patch` is absent for large or binary files."""

    filename: str
    status: str  # added, removed, modified, renamed, copied, changed or unchanged
    additions: int
    deletions: int
    patch: str | None
    previous_filename: str | None = None


@dataclass(frozen=True)
class PullFacts:
    number: int
    title: str
    body: str
    author: str
    files: tuple[PullFile, ...]
    total_commits: int
    files_truncated: bool  # GitHub's 3000-file listing cap was hit


@dataclass(frozen=True)
class RiskConfig:
    protected_paths: tuple[str, ...]
    high_risk_score: int = 70
    size_small: int = 200  # changed lines
    size_large: int = 1000  # changed lines


# ---------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class Reason:
    points: int
    code: str
    text: str  # already neutralised: safe in Markdown


@dataclass(frozen=True)
class SecretFinding:
    path: str
    line: int  # in the new file
    kind: str  # never the value


@dataclass(frozen=True)
class DependencyChange:
    manifest: str
    package: str
    old_version: str | None
    new_version: str | None
    change: ChangeKind


@dataclass(frozen=True)
class Checklist:
    total: int
    done: int


@dataclass(frozen=True)
class RiskReport:
    score: int
    level: Level
    reasons: tuple[Reason, ...]
    secrets: tuple[SecretFinding, ...]
    dependencies: tuple[DependencyChange, ...]
    migrations: tuple[str, ...]
    protected: tuple[str, ...]
    checklist: Checklist
    linked_issues: tuple[int, ...]
    needs_approval: bool
    fails: bool


# ---------------------------------------------------------------------------------------------
# Patches


@dataclass(frozen=True)
class _Line:
    kind: str  # "+", "-" or " "
    number: int  # the line in the new file; 0 for a removed line
    text: str


_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@(.*)$")


def _hunks(patch: str) -> list[tuple[str, list[_Line]]]:
    """The hunks of a GitHub file patch: (the header's trailing context, the lines)."""
    hunks: list[tuple[str, list[_Line]]] = []
    lines: list[_Line] | None = None
    number = 0
    # Only "\n" ends a line in a diff: a "\r" or "\u2028" inside a line must not shift the numbers.
    for raw in patch.split("\n"):
        header = _HUNK.match(raw)
        if header:
            number = int(header.group(1))
            lines = []
            hunks.append((header.group(2).strip(), lines))
            continue
        if lines is None or raw.startswith("\\"):  # before the first hunk, or "\ No newline at end of file"
            continue
        kind, text = (raw[0], raw[1:]) if raw else (" ", "")
        if kind == "+":
            lines.append(_Line("+", number, text))
            number += 1
        elif kind == "-":
            lines.append(_Line("-", 0, text))
        elif kind == " ":
            lines.append(_Line(" ", number, text))
            number += 1
    return hunks


# ---------------------------------------------------------------------------------------------
# Secrets

GITHUB_TOKEN = "GitHub token"
GITHUB_PAT = "GitHub fine-grained token"
AWS_KEY_ID = "AWS access key id"
GOOGLE_API_KEY = "Google API key"
SLACK_TOKEN = "Slack token"
PRIVATE_KEY = "private key"
GCP_SERVICE_ACCOUNT_KEY = "GCP service account key"

# Each has a distinctive prefix, an exact alphabet and length, and boundaries on both sides. The
# "body" group is the random part, checked against placeholders.
_TOKENS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (GITHUB_TOKEN, re.compile(r"(?<![A-Za-z0-9_])gh[pousr]_(?P<body>[A-Za-z0-9]{36,251})(?![A-Za-z0-9_])")),
    (GITHUB_PAT, re.compile(r"(?<![A-Za-z0-9_])github_pat_(?P<body>[A-Za-z0-9]{22}_[A-Za-z0-9]{59,200})"
                            r"(?![A-Za-z0-9_])")),
    (AWS_KEY_ID, re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)(?P<body>[0-9A-Z]{16})(?![A-Za-z0-9])")),
    (GOOGLE_API_KEY, re.compile(r"(?<![A-Za-z0-9_-])AIza(?P<body>[0-9A-Za-z_-]{35})(?![0-9A-Za-z_-])")),
    (SLACK_TOKEN, re.compile(r"(?<![A-Za-z0-9_-])xox[abpr]-(?P<body>[0-9]+-[A-Za-z0-9-]{10,250})"
                             r"(?![A-Za-z0-9_-])")),
)
_MIN_DISTINCT = 6  # a random body has many distinct characters; "xxxx…" or "0000…" is a placeholder
_PEM_HEADER = r"-----BEGIN (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED) )?PRIVATE KEY-----"
_BASE64_RUN = r"[A-Za-z0-9+/]{32,}"
# The key on the same line: JSON's escaped "\n" (as in a service-account file), or one flattened line.
_PEM_INLINE = re.compile(_PEM_HEADER + r"(?:\\r)?(?:\\n|[ \t]+)" + _BASE64_RUN)
_PEM_ALONE = re.compile(_PEM_HEADER)
_GCP_KEY = re.compile(r"\"private_key\"\s*:\s*\"" + _PEM_HEADER + r"(?:\\r)?\\n" + _BASE64_RUN)
# The line after a header: base64 key material (maybe quoted, as in a string literal), or the
# header of an encrypted key.
_KEY_MATERIAL = re.compile(r"^\s*[\"']?(?:" + _BASE64_RUN + r"={0,2}|Proc-Type: 4,ENCRYPTED)(?:\\n)?[\"']?"
                           r"\s*[,+]?\s*$")


def _real_token(match: re.Match[str]) -> bool:
    body = match.group("body")
    return len(set(body)) >= _MIN_DISTINCT and not match.group(0).endswith("EXAMPLE")


def _secret_kinds(text: str, following: str | None) -> list[str]:
    """The kinds of credential in one added line; `following` is the next added line, if any."""
    kinds = [kind for kind, pattern in _TOKENS if any(_real_token(m) for m in pattern.finditer(text))]
    if _GCP_KEY.search(text):
        kinds.append(GCP_SERVICE_ACCOUNT_KEY)
    elif _PEM_INLINE.search(text) or (
        following is not None and _PEM_ALONE.search(text) and _KEY_MATERIAL.match(following)
    ):
        kinds.append(PRIVATE_KEY)
    return kinds


def scrub(text: str) -> str:
    """`text` with every recognisable token replaced by `[redacted]`, placeholders included."""
    for _, pattern in _TOKENS:
        text = pattern.sub(REDACTED, text)
    return text


def scan_secrets(path: str, patch: str) -> tuple[SecretFinding, ...]:
    """Credentials in the added lines of one file's patch, by line in the new file, then kind."""
    shown = _path(path)
    findings: set[SecretFinding] = set()
    for _, lines in _hunks(patch):
        for index, line in enumerate(lines):
            if line.kind != "+":
                continue
            after = lines[index + 1] if index + 1 < len(lines) else None
            following = after.text if after is not None and after.kind == "+" else None
            kinds = _secret_kinds(line.text, following)
            findings.update(SecretFinding(shown, line.number, kind) for kind in kinds)
    return tuple(sorted(findings, key=lambda finding: (finding.line, finding.kind)))


# ---------------------------------------------------------------------------------------------
# Dependencies

_UNKNOWN = "\x00unknown"  # the parser has not seen where in the file a hunk starts
_CLOSED = "\x00closed"  # a block just closed: outside anything the parser knows

_LOCKFILES = frozenset({
    "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml", "bun.lockb", "bun.lock",
    "poetry.lock", "pipfile.lock", "uv.lock", "pdm.lock", "cargo.lock", "go.sum", "gemfile.lock",
    "composer.lock",
})
_REQUIREMENTS_NAMES = ("requirements*.txt", "requirements*.in", "*requirements.txt", "*requirements.in",
                       "constraints*.txt", "*constraints.txt")

# A raw dependency line: (+ or -, name, version).
_Entry = tuple[str, str, str | None]


def manifest_kind(path: str) -> str | None:
    """Which dependency manifest format `path` is, or None."""
    parts = path.lower().split("/")
    name = parts[-1]
    simple = {"pyproject.toml": "pyproject", "pipfile": "pipfile", "cargo.toml": "cargo",
              "package.json": "npm", "composer.json": "composer", "go.mod": "go", "gemfile": "gemfile"}
    if name in simple:
        return simple[name]
    if any(fnmatch.fnmatchcase(name, pattern) for pattern in _REQUIREMENTS_NAMES):
        return "requirements"
    if len(parts) > 1 and parts[-2] == "requirements" and name.endswith((".txt", ".in")):
        return "requirements"
    return None


def is_lockfile(path: str) -> bool:
    return path.lower().rsplit("/", 1)[-1] in _LOCKFILES


def _python_key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_PEP508_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
# A version holds no operator character, so a specifier splits one way only (no backtracking blow-up).
_SPEC = r"(?:===|==|!=|~=|>=|<=|>|<)\s*[A-Za-z0-9*+._-][A-Za-z0-9*+!._-]*"
_REQUIREMENT = re.compile(
    rf"^(?P<name>{_PEP508_NAME})\s*(?:\[[^\]]*\])?\s*"
    rf"(?:(?P<spec>{_SPEC}(?:\s*,\s*{_SPEC})*)|\(\s*(?P<paren>{_SPEC}(?:\s*,\s*{_SPEC})*)\s*\)|(?P<url>@.*))?"
    r"\s*(?:;.*)?$"
)


def _requirement(text: str) -> tuple[str, str | None, bool] | None:
    """(name, version, has a specifier) of a PEP 508 requirement, or None when `text` is not one."""
    match = _REQUIREMENT.match(text.strip())
    if not match:
        return None
    spec = re.sub(r"\s+", "", match.group("spec") or match.group("paren") or "")
    if not spec:
        return match.group("name"), None, False
    if spec.startswith("==") and not spec.startswith("===") and "," not in spec:
        spec = spec[2:]
    return match.group("name"), spec, True


def _requirements_line(line: _Line, state: dict[str, str]) -> list[_Entry]:
    text = re.split(r"(?:^|\s)#", line.text, maxsplit=1)[0]
    text = re.split(r"\s--?[A-Za-z]", " " + text, maxsplit=1)[0].strip()  # trailing --hash=… options
    if not text or text.startswith("-"):
        return []
    parsed = _requirement(text)
    return [(line.kind, parsed[0], parsed[1])] if parsed else []


_TOML_HEADER = re.compile(r"^\s*\[\[?\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")
_TOML_KEY = r"(?P<key>[A-Za-z0-9_-]+|\"[^\"\n]+\"|'[^'\n]+')"
_TOML_ARRAY = re.compile(r"^\s*" + _TOML_KEY + r"\s*=\s*\[(?P<rest>.*)$")
_TOML_VALUE = re.compile(r"^\s*" + _TOML_KEY + r"\s*=\s*(?P<value>.+?)\s*$")
_QUOTED = re.compile(r"\"((?:[^\"\\\n]|\\.)*)\"|'([^'\n]*)'")
_INLINE_VERSION = re.compile(r"(?:^|[{,\s])version\s*=\s*[\"']([^\"'\n]*)[\"']")
_VERSION_LIKE = re.compile(r"^\s*(?:[\^~<>=!]+\s*)?v?\d|^\s*\*\s*$")
_PEP621_ARRAYS = frozenset({"dependencies", "requires", "dev-dependencies"})
_ANY_KEY_SECTIONS = frozenset({"project.optional-dependencies", "dependency-groups"})
# Keys that hold a version-looking string but are no dependency; only consulted when the section
# a hunk is in cannot be seen.
_NOT_PACKAGES = frozenset({
    "version", "name", "edition", "rust-version", "requires-python", "python-requires", "python_requires",
    "python_version", "python-version", "python_full_version", "target-version", "minversion",
    "min-version", "min_version", "node", "npm", "yarn", "pnpm", "packagemanager", "license", "php",
})


def _unquote_key(key: str) -> str:
    return key[1:-1] if key[:1] in "\"'" else key


def _quoted_strings(text: str) -> list[str]:
    return [double if double or not single else single for double, single in _QUOTED.findall(text)]


def _toml_entry(kind: str, line: _Line, key: str, value: str, section: str) -> list[_Entry]:
    """A `name = "version"` or `name = { version = "…" }` line in a poetry, Cargo or Pipfile table."""
    key = _unquote_key(key)
    table = re.match(r"^(?:.*\.)?(?:dev-|build-)?dependencies\.(?P<name>[^.]+)$", section)
    if table:  # Cargo's [dependencies.serde] with `version = "1.0"`
        if key != "version":
            return []
        quoted = _quoted_strings(value)
        return [(line.kind, _unquote_key(table.group("name")), quoted[0] if quoted else None)]
    if value.startswith("{"):
        inline = _INLINE_VERSION.search(value)
        version = inline.group(1) if inline else None
    elif value[:1] in "\"'":
        quoted = _quoted_strings(value)
        version = quoted[0] if quoted else None
    else:
        return []  # `true`, a number, a dotted key's value: not a dependency line
    if section == _UNKNOWN:
        if key.lower() in _NOT_PACKAGES or version is None or not _VERSION_LIKE.match(version):
            return []
    elif kind == "pipfile":
        if section not in ("packages", "dev-packages"):
            return []
    elif kind == "pyproject":
        if not (section.startswith("tool.poetry.") and section.endswith("dependencies")):
            return []
    elif not section.endswith("dependencies"):  # Cargo: [dependencies], [target.'cfg(…)'.dev-dependencies]
        return []
    return [(line.kind, key, version)]


def _pep508_entries(line: _Line, strings: Iterable[str], need_spec: bool) -> list[_Entry]:
    entries: list[_Entry] = []
    for text in strings:
        parsed = _requirement(text)
        if parsed and (parsed[2] or not need_spec):
            entries.append((line.kind, parsed[0], parsed[1]))
    return entries


def _toml_parser(kind: str) -> Callable[[_Line, dict[str, str]], list[_Entry]]:
    def parse(line: _Line, state: dict[str, str]) -> list[_Entry]:
        text = line.text
        header = _TOML_HEADER.match(text)
        if header:
            state["section"] = re.sub(r"\s*\.\s*", ".", header.group(1)).replace('"', "").lower()
            state["array"] = _CLOSED
            return []
        section, array = state["section"], state["array"]
        if kind == "pyproject" and array not in (_UNKNOWN, _CLOSED):  # inside `dependencies = [`
            if "]" in _QUOTED.sub("", text):
                state["array"] = _CLOSED
            return _pep508_entries(line, _quoted_strings(text), need_spec=False) if _is_dep_array(
                section, array) else []
        opened = _TOML_ARRAY.match(text)
        if opened:
            key = _unquote_key(opened.group("key")).lower()
            rest = opened.group("rest")
            if "]" not in _QUOTED.sub("", rest):
                state["array"] = key
            if kind != "pyproject" or not _is_dep_array(section, key):
                return []
            return _pep508_entries(line, _quoted_strings(rest), need_spec=False)
        value = _TOML_VALUE.match(text)
        if value:
            return _toml_entry(kind, line, value.group("key"), value.group("value"), section)
        stripped = text.strip()
        if stripped.startswith("]"):
            state["array"] = _CLOSED
        elif kind == "pyproject" and array == _UNKNOWN and re.match(r"^[\"'].*[\"'],?$", stripped):
            # A list item whose list is out of sight: a requirement only if it pins a version.
            if section in (_UNKNOWN, "project", "build-system") or section in _ANY_KEY_SECTIONS:
                return _pep508_entries(line, _quoted_strings(stripped), need_spec=True)
        return []

    return parse


def _is_dep_array(section: str, key: str) -> bool:
    return key in _PEP621_ARRAYS or section in _ANY_KEY_SECTIONS


_JSON_OPEN = re.compile(r"^\s*\"(?P<key>[^\"\n]+)\"\s*:\s*\{(?P<rest>.*)$")
_JSON_ENTRY = re.compile(r"\"(?P<key>[^\"\n]+)\"\s*:\s*\"(?P<value>(?:[^\"\\\n]|\\.)*)\"")
_JSON_CLOSE = re.compile(r"^\s*\}")
_NPM_VERSION_LIKE = re.compile(r"^\s*(?:[\^~<>=]+\s*)?v?\d|^\s*(?:\*|latest|next|workspace:|npm:)")


def _json_parser(sections: frozenset[str]) -> Callable[[_Line, dict[str, str]], list[_Entry]]:
    def parse(line: _Line, state: dict[str, str]) -> list[_Entry]:
        opened = _JSON_OPEN.match(line.text)
        if opened:
            rest = opened.group("rest")
            if "}" not in rest:
                state["block"] = opened.group("key")
                return []
            if opened.group("key") not in sections:  # an object on one line
                return []
            return [(line.kind, m.group("key"), m.group("value")) for m in _JSON_ENTRY.finditer(rest)]
        if _JSON_CLOSE.match(line.text):
            state["block"] = _CLOSED
            return []
        entry = _JSON_ENTRY.fullmatch(line.text.strip().rstrip(","))
        if not entry:
            return []
        block, key, value = state["block"], entry.group("key"), entry.group("value")
        if block in sections or (block == _UNKNOWN and key.lower() not in _NOT_PACKAGES
                                 and _NPM_VERSION_LIKE.match(value)):
            return [(line.kind, key, value)]
        return []

    return parse


_GO_BLOCK = re.compile(r"^\s*(?P<verb>require|replace|exclude|retract|tool|godebug|ignore)\s*\(\s*(?://.*)?$")
_GO_REQUIRE = re.compile(r"^\s*require\s+(?P<module>[^\s()]+)\s+(?P<version>v\d\S*)\s*(?://.*)?$")
_GO_ENTRY = re.compile(r"^\s*(?P<module>[^\s()]+)\s+(?P<version>v\d\S*)\s*(?://.*)?$")


def _go_line(line: _Line, state: dict[str, str]) -> list[_Entry]:
    text = line.text
    single = _GO_REQUIRE.match(text)
    if single:
        return [(line.kind, single.group("module"), single.group("version"))]
    block = _GO_BLOCK.match(text)
    if block:
        state["block"] = block.group("verb")
        return []
    if re.match(r"^\s*\)", text):
        state["block"] = _CLOSED
        return []
    entry = _GO_ENTRY.match(text)
    if not entry or "=>" in text:
        return []
    module = entry.group("module")
    if state["block"] == "require" or (state["block"] == _UNKNOWN and ("." in module or "/" in module)):
        return [(line.kind, module, entry.group("version"))]
    return []


_GEM = re.compile(r"""^\s*gem\s*\(?\s*(["'])(?P<name>[^"'\s]+)\1(?P<rest>.*)$""")
_GEM_VERSION = re.compile(r"""\s*,\s*(["'])([^"'\n]*)\1""")


def _gemfile_line(line: _Line, state: dict[str, str]) -> list[_Entry]:
    gem = _GEM.match(line.text)
    if not gem:
        return []
    versions: list[str] = []
    position = gem.start("rest")
    while (version := _GEM_VERSION.match(line.text, position)) is not None:
        versions.append(version.group(2))
        position = version.end()
    return [(line.kind, gem.group("name"), ", ".join(versions) or None)]


_PARSERS: Mapping[str, Callable[[_Line, dict[str, str]], list[_Entry]]] = {
    "requirements": _requirements_line,
    "pyproject": _toml_parser("pyproject"),
    "pipfile": _toml_parser("pipfile"),
    "cargo": _toml_parser("cargo"),
    "npm": _json_parser(frozenset({"dependencies", "devDependencies", "peerDependencies",
                                   "optionalDependencies"})),
    "composer": _json_parser(frozenset({"require", "require-dev"})),
    "go": _go_line,
    "gemfile": _gemfile_line,
}
_PYTHON_KINDS = frozenset({"requirements", "pyproject", "pipfile"})


def _version_text(version: str | None) -> str | None:
    if version is None:
        return None
    if "://" in version or version.startswith(("git+", "git@", "github:", "file:", "link:")):
        return "(url)"  # a URL may carry credentials, and it is no version to compare
    return _shorten(scrub(version.strip()), MAX_VERSION_CHARS) or None


def _shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters; Markdown safety comes later, when it is rendered."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _numbers(version: str | None) -> tuple[int, ...] | None:
    found = re.search(r"\d+(?:\.\d+)*", version or "")
    if not found:
        return None
    numbers = [int(part[:18]) for part in found.group(0).split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:  # 1.2 and 1.2.0 are the same release
        numbers.pop()
    return tuple(numbers)


def _change(old: str | None, new: str | None) -> ChangeKind | None:
    if old == new:
        return None
    old_numbers, new_numbers = _numbers(old), _numbers(new)
    if old_numbers is None or new_numbers is None or old_numbers == new_numbers:
        return "changed"
    return "upgraded" if new_numbers > old_numbers else "downgraded"


def dependency_changes(path: str, patch: str) -> tuple[DependencyChange, ...]:
    """The packages a manifest's patch adds, removes or changes, by package name."""
    kind = manifest_kind(path)
    if kind is None:
        return ()
    parser = _PARSERS[kind]
    old: dict[str, tuple[str, str | None]] = {}
    new: dict[str, tuple[str, str | None]] = {}
    for context, lines in _hunks(patch):
        state = {"section": _UNKNOWN, "array": _UNKNOWN, "block": _UNKNOWN}
        header = _TOML_HEADER.match(context)
        if header and kind in ("pyproject", "pipfile", "cargo"):
            parser(_Line(" ", 0, context), state)
        for line in lines:
            for sign, name, version in parser(line, state):
                if sign == " ":
                    continue
                key = _python_key(name) if kind in _PYTHON_KINDS else name
                (new if sign == "+" else old)[key] = (name, version)
    manifest = _path(path)
    changes: list[DependencyChange] = []
    for key in sorted(old.keys() | new.keys()):
        before, after = old.get(key), new.get(key)
        name = _shorten(scrub((after or before or (key, None))[0]), MAX_PACKAGE_CHARS)
        old_version = _version_text(before[1]) if before else None
        new_version = _version_text(after[1]) if after else None
        if before is None:
            changes.append(DependencyChange(manifest, name, None, new_version, "added"))
        elif after is None:
            changes.append(DependencyChange(manifest, name, old_version, None, "removed"))
        elif (change := _change(old_version, new_version)) is not None:
            changes.append(DependencyChange(manifest, name, old_version, new_version, change))
    return tuple(changes)


# ---------------------------------------------------------------------------------------------
# What kind of file


_MIGRATION_GLOBS = ("**/migrations/**", "**/alembic/versions/**", "**/db/migrate/**", "**/*.sql")
_NOT_MIGRATIONS = frozenset({"__init__.py", "readme", "readme.md", "readme.rst", "readme.txt", ".gitkeep"})
_TEST_DIRS = frozenset({"test", "tests", "__tests__", "spec", "specs", "e2e", "testing"})
_TEST_NAMES = ("test_*.py", "*_test.py", "*_tests.py", "conftest.py", "*_test.go", "*_spec.rb", "*_test.rb",
               "*.test.*", "*.spec.*", "*test.java", "*tests.java", "*test.kt", "*tests.kt", "*tests.cs",
               "*test.cs", "*_test.rs", "*_test.exs")
_SOURCE_EXTENSIONS = frozenset({
    "py", "pyi", "js", "jsx", "mjs", "cjs", "ts", "tsx", "mts", "cts", "vue", "svelte", "go", "rs", "java",
    "kt", "kts", "scala", "groovy", "rb", "php", "c", "h", "cc", "cpp", "cxx", "hh", "hpp", "cs", "fs",
    "swift", "m", "mm", "ex", "exs", "erl", "clj", "hs", "ml", "lua", "dart", "r", "jl", "pl", "sh", "bash",
    "zsh", "ps1",
})


def is_migration(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return name not in _NOT_MIGRATIONS and any(glob_match(pattern, path) for pattern in _MIGRATION_GLOBS)


def is_test(path: str) -> bool:
    parts = path.lower().split("/")
    return any(part in _TEST_DIRS for part in parts[:-1]) or any(
        fnmatch.fnmatchcase(parts[-1], pattern) for pattern in _TEST_NAMES
    )


def is_source(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return "." in name and name.rsplit(".", 1)[-1] in _SOURCE_EXTENSIONS and not is_test(path)


# ---------------------------------------------------------------------------------------------
# The body: checklist and linked issues


_FENCE = re.compile(r"^\s*(```|~~~)")
_TASK = re.compile(r"^\s*(?:>\s*)*(?:[-*+]|\d{1,9}[.)])\s+\[([ xX])\](?:\s|$)")
_INLINE_CODE = re.compile(r"`+[^`\n]*`+")
_CLOSING = re.compile(
    r"(?i)(?<![\w/-])(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)(?::\s*|\s+)"
    r"(?:(?:[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100})?#(?P<number>\d{1,9})"
    r"|https://github\.com/[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}/issues/(?P<url_number>\d{1,9}))(?!\w)"
)


def _prose_lines(body: str) -> list[str]:
    """The body's lines outside fenced code blocks, with inline code removed."""
    lines: list[str] = []
    fence = ""
    for line in (body or "")[:MAX_BODY_CHARS].split("\n"):
        match = _FENCE.match(line)
        if match and (not fence or match.group(1)[0] == fence):
            fence = "" if fence else match.group(1)[0]
            continue
        if not fence:
            lines.append(_INLINE_CODE.sub(" ", line))
    return lines


def parse_checklist(body: str) -> Checklist:
    """The Markdown task list items of a body (`- [ ]`, `* [x]`, `1. [X]`), outside code."""
    marks = [match.group(1) for line in _prose_lines(body) if (match := _TASK.match(line))]
    return Checklist(total=len(marks), done=sum(1 for mark in marks if mark != " "))


def parse_linked_issues(body: str) -> tuple[int, ...]:
    """Issue numbers a body closes (`closes #1`, `fixes owner/repo#2`, `resolves <issue URL>`), sorted."""
    numbers = {
        int(match.group("number") or match.group("url_number"))
        for line in _prose_lines(body)
        for match in _CLOSING.finditer(line)
    }
    return tuple(sorted(number for number in numbers if number > 0))[:MAX_LISTED]


# ---------------------------------------------------------------------------------------------
# Assessing


def _path(path: str) -> str:
    return _shorten(scrub(str(path or "")), MAX_PATH_CHARS)


def _names(names: Sequence[str], limit: int = MAX_IN_TEXT) -> str:
    shown = ", ".join(neutralise(name) for name in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else plural or word + 's'}"


def _check_config(config: RiskConfig) -> None:
    if isinstance(config.protected_paths, str) or not all(
        isinstance(pattern, str) for pattern in config.protected_paths
    ):
        raise InvalidInput("risk config: protected_paths must be a sequence of glob strings")
    score = config.high_risk_score
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= MAX_SCORE:
        raise InvalidInput(f"risk config: high_risk_score {score!r} is not an integer from 1 to {MAX_SCORE}")
    for name in ("size_small", "size_large"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidInput(f"risk config: {name} {value!r} is not a non-negative integer")
    if config.size_small >= config.size_large:
        raise InvalidInput(f"risk config: size_small {config.size_small} must be below size_large "
                           f"{config.size_large}")


def _reason(code: str, text: str, points: int | None = None) -> Reason:
    return Reason(POINTS[code] if points is None else points, code, neutralise(text, 2000))


def _size_reasons(facts: PullFacts, config: RiskConfig) -> list[Reason]:
    lines = sum(max(0, f.additions) + max(0, f.deletions) for f in facts.files)
    files = len(facts.files)
    what = (f"{_plural(lines, 'changed line')} in {_plural(files, 'file')}"
            f" ({_plural(max(0, facts.total_commits), 'commit')})")
    if files == 0 and lines == 0:
        reasons = [_reason("size.small", "Empty pull request: no changed files.")]
    elif lines >= config.size_large:
        reasons = [_reason("size.large", f"Large change: {what}, at least {config.size_large:,}. "
                                         "Hard to review thoroughly; consider splitting it.")]
    elif lines > config.size_small:
        reasons = [_reason("size.medium", f"Medium change: {what}, more than {config.size_small:,}.")]
    else:
        reasons = [_reason("size.small", f"Small change: {what}.")]
    if files > MANY_FILES:
        reasons.append(_reason("size.files", f"Many files: {_plural(files, 'file')} changed, more than "
                                             f"{MANY_FILES}."))
    if facts.files_truncated:
        reasons.append(_reason("size.truncated", f"GitHub lists at most {MAX_FILES:,} files and this pull "
                                                 "request has more: the analysis is partial."))
    return reasons


@dataclass(frozen=True)
class _Selection:
    files: tuple[PullFile, ...]  # the files analysed by path
    patched: tuple[PullFile, ...]  # the files whose patches are analysed
    reasons: tuple[Reason, ...]


def _select(all_files: tuple[PullFile, ...]) -> _Selection:
    files = all_files[:MAX_FILES]
    budget = MAX_PATCH_BYTES
    patched: list[PullFile] = []
    over_budget: list[str] = []
    without_patch: list[str] = []
    for file in files:
        if not file.patch:
            # GitHub counts no lines in a binary file; a rename without changes has nothing to inspect.
            if file.additions > 0 or file.status in ("added", "modified", "changed", "copied"):
                without_patch.append(_path(file.filename))
            continue
        size = len(file.patch.encode("utf-8", "replace"))
        if size > budget:  # later, smaller patches may still fit
            over_budget.append(_path(file.filename))
            continue
        budget -= size
        patched.append(file)
    reasons: list[Reason] = []
    partial: list[str] = []
    if len(all_files) > MAX_FILES:
        partial.append(f"only the first {MAX_FILES:,} of {len(all_files):,} files were analysed")
    if over_budget:
        partial.append(f"patches beyond {MAX_PATCH_BYTES // (1024 * 1024)} MB of patch text were not read "
                       f"({_plural(len(over_budget), 'file')}: {_names(over_budget)})")
    if partial:
        reasons.append(_reason("analysis.partial", "Partial analysis: " + "; ".join(partial) + "."))
    if without_patch:
        reasons.append(_reason("patch.missing", f"{_plural(len(without_patch), 'file')} without a patch "
                                                "(binary or too large), not inspected for secrets or "
                                                f"dependencies: {_names(without_patch)}."))
    return _Selection(files, tuple(patched), tuple(reasons))


def _protected(files: Sequence[PullFile], config: RiskConfig) -> tuple[list[str], list[Reason]]:
    touched: list[str] = []
    for file in files:
        for candidate in (file.filename, file.previous_filename):
            shown = _path(candidate or "")
            if candidate and protected_by(candidate, config.protected_paths) and shown not in touched:
                touched.append(shown)
    if not touched:
        return [], []
    return touched, [_reason("protected", f"Touches {_plural(len(touched), 'protected path')}: "
                                          f"{_names(touched, 10)}.")]


def _dependencies(selection: _Selection) -> tuple[list[DependencyChange], list[Reason]]:
    changes = [change for file in selection.patched
               for change in dependency_changes(file.filename, file.patch or "")]
    manifests = [file for file in selection.files if manifest_kind(file.filename)]
    lockfiles = [_path(file.filename) for file in selection.files if is_lockfile(file.filename)]
    reasons: list[Reason] = []
    if changes:
        counts = {kind: sum(1 for change in changes if change.change == kind)
                  for kind in ("added", "upgraded", "downgraded", "removed", "changed")}
        summary = ", ".join(f"{count} {kind}" for kind, count in counts.items() if count)
        where = _names(sorted({change.manifest for change in changes}))
        lock_note = f" Lockfiles updated: {_names(lockfiles)}." if lockfiles else ""
        reasons.append(_reason("dependencies", f"Dependency changes: {_plural(len(changes), 'package')} "
                                               f"({summary}) in {where}.{lock_note}"))
        risky = [change.package for change in changes if change.change in ("downgraded", "removed")]
        if risky:
            reasons.append(_reason("dependencies.downgraded", f"Packages downgraded or removed: "
                                                              f"{_names(risky)}."))
    if lockfiles and not manifests:
        reasons.append(_reason("dependencies.lockfile", f"Lockfiles changed without a manifest change: "
                                                        f"{_names(lockfiles)}. Check that the update is "
                                                        "intended."))
    return changes, reasons


def _migrations(files: Sequence[PullFile]) -> tuple[list[str], list[Reason]]:
    paths = [_path(file.filename) for file in files if is_migration(file.filename)]
    if not paths:
        return [], []
    return paths, [_reason("migrations", f"Database migrations: {_plural(len(paths), 'file')} "
                                         f"({_names(paths)}). Check they are reversible and safe to run "
                                         "on live data.")]


def _changed(file: PullFile) -> bool:
    # A rename without changes moves code but changes none of it.
    return file.additions > 0 or file.deletions > 0 or file.status in ("added", "removed")


def _tests(files: Sequence[PullFile]) -> list[Reason]:
    sources = [file for file in files if is_source(file.filename) and _changed(file)]
    tests = [file for file in files
             if is_test(file.filename) or (file.previous_filename and is_test(file.previous_filename))]
    if tests:
        return [_reason("tests.changed", f"Tests changed: {_plural(len(tests), 'test file')} alongside "
                                         f"{_plural(len(sources), 'source file')}.")]
    if sources:
        names = [_path(file.filename) for file in sources]
        return [_reason("tests.missing", f"Source changed ({_plural(len(sources), 'file')}: {_names(names)}) "
                                         "but no test file did.")]
    return []


def _checklist(checklist: Checklist) -> list[Reason]:
    if checklist.total == 0:
        return []
    unchecked = checklist.total - checklist.done
    if unchecked == 0:
        return [_reason("checklist.complete", f"Checklist complete: {checklist.done} of {checklist.total} "
                                              "items checked.")]
    points = min(MAX_CHECKLIST_POINTS, POINTS_PER_UNCHECKED * unchecked)
    return [_reason("checklist.unchecked", f"Checklist: {_plural(unchecked, 'item')} of {checklist.total} "
                                           "unchecked.", points)]


def _issues(linked: Sequence[int]) -> list[Reason]:
    if linked:
        return [_reason("issue.linked", "Linked issues: " + ", ".join(f"#{number}" for number in linked[:10])
                        + ("…" if len(linked) > 10 else "") + ".")]
    return [_reason("issue.unlinked", "No linked issue: the body has no closing keyword such as "
                                      "'Closes #12', 'Fixes owner/repo#12' or 'Resolves' with an issue URL.")]


def _secrets(files: Sequence[PullFile]) -> tuple[list[SecretFinding], list[Reason]]:
    findings = [finding for file in files for finding in scan_secrets(file.filename, file.patch or "")]
    if not findings:
        return [], []
    kinds = sorted({finding.kind for finding in findings})
    where = sorted({finding.path for finding in findings})
    return findings, [_reason("secret", f"{_plural(len(findings), 'secret')} in added lines "
                                        f"({', '.join(kinds)}) in {_names(where)}. The check fails.")]


def level_for(score: int, high_risk_score: int) -> Level:
    if score >= high_risk_score:
        return "high"
    return "medium" if score >= MEDIUM_SCORE else "low"


def assess(facts: PullFacts, config: RiskConfig) -> RiskReport:
    """The risk report of one pull request. Pure and deterministic."""
    _check_config(config)
    selection = _select(tuple(facts.files))
    protected, protected_reasons = _protected(selection.files, config)
    dependencies, dependency_reasons = _dependencies(selection)
    migrations, migration_reasons = _migrations(selection.files)
    secrets, secret_reasons = _secrets(selection.patched)
    checklist = parse_checklist(facts.body)
    linked = parse_linked_issues(facts.body)
    reasons = [
        *_size_reasons(facts, config), *selection.reasons, *protected_reasons, *dependency_reasons,
        *migration_reasons, *secret_reasons, *_tests(selection.files), *_checklist(checklist),
        *_issues(linked),
    ]
    reasons.sort(key=lambda reason: (-reason.points, reason.code))
    score = min(MAX_SCORE, sum(reason.points for reason in reasons))
    return RiskReport(
        score=score,
        level=level_for(score, config.high_risk_score),
        reasons=tuple(reasons),
        secrets=tuple(secrets[:MAX_LISTED]),
        dependencies=tuple(dependencies[:MAX_LISTED]),
        migrations=tuple(migrations[:MAX_LISTED]),
        protected=tuple(protected[:MAX_LISTED]),
        checklist=checklist,
        linked_issues=linked,
        needs_approval=score >= config.high_risk_score and not secrets,
        fails=bool(secrets),
    )


# ---------------------------------------------------------------------------------------------
# Publishing


_ICONS: Mapping[str, str] = {"low": "🟢", "medium": "🟡", "high": "🔴"}


def check_conclusion(report: RiskReport) -> Conclusion:
    if report.fails:
        return "failure"
    return "action_required" if report.needs_approval else "success"


def report_title(report: RiskReport) -> str:
    """The check run's title, at most 255 characters."""
    title = f"QA risk: {report.level} ({report.score}/100)"
    if report.fails:
        title += f" – {_plural(len(report.secrets), 'secret')} found, the check fails"
    elif report.needs_approval:
        title += " – needs a human's review and approval"
    return title[:MAX_TITLE_CHARS]


def _code(text: str, limit: int) -> str:
    """Untrusted text as an inline code span: neutralised, so it cannot close the span or break a table."""
    return f"`{neutralise(text, limit)}`"


def _what_to_do(report: RiskReport) -> list[str]:
    if report.fails:
        return [
            "**A secret was found in the added lines. The check fails.**",
            "",
            "1. Remove it from the branch. It stays in the branch's history: rewrite the commits that added "
            "it, or treat it as public.",
            "2. Rotate it now: revoke the credential at its issuer and issue a new one. Anyone who could "
            "read the pull request may already have it.",
            "3. Keep credentials in a secret store and out of the repository; push again.",
        ]
    if report.needs_approval:
        return [
            "**The risk is high: a human must review this pull request.**",
            "",
            "Review the reasons below, then approve with `/approve <task>` in a comment, or request "
            "changes. A smaller change, linked issue and tests lower the score.",
        ]
    return ["No action needed from the QA agent's side: the risk is below the approval threshold."]


def report_markdown(report: RiskReport) -> str:
    """The check run summary in GitHub Markdown, at most 60,000 characters."""
    heading = f"## {_ICONS[report.level]} QA risk: {report.level} ({report.score}/100)"
    if report.fails:
        heading = f"## ⛔ QA risk: secret found ({report.score}/100)"
    lines = [heading, "", *_what_to_do(report), "", "| Points | Reason |", "| ---: | --- |"]
    lines += [f"| {reason.points} | {neutralise(reason.text, 2000)} |" for reason in report.reasons]
    lines.append(f"| **{report.score}** | **Score** (the sum, capped at {MAX_SCORE}) |")
    facts = [f"Checklist: {report.checklist.done} of {report.checklist.total} items checked."
             if report.checklist.total else "Checklist: none in the body."]
    facts.append("Linked issues: " + ", ".join(f"#{number}" for number in report.linked_issues) + "."
                 if report.linked_issues else "Linked issues: none.")
    lines += ["", " ".join(facts)]
    if report.secrets:
        lines += ["", "### Secrets in added lines", "", "Where they are only; the values are never shown.",
                  ""]
        lines += [f"- {_code(f'{finding.path}:{finding.line}', 300)} ({neutralise(finding.kind)})"
                  for finding in report.secrets]
    if report.protected:
        lines += ["", "### Protected paths", ""]
        lines += [f"- {_code(path, 300)}" for path in report.protected]
    if report.dependencies:
        lines += ["", "### Dependency changes", "", "| Manifest | Package | Change | From | To |",
                  "| --- | --- | --- | --- | --- |"]
        lines += [f"| {_code(change.manifest, 200)} | {_code(change.package, 120)} | {change.change} | "
                  f"{_code(change.old_version, 60) if change.old_version else '–'} | "
                  f"{_code(change.new_version, 60) if change.new_version else '–'} |"
                  for change in report.dependencies]
    if report.migrations:
        lines += ["", "### Migrations", ""]
        lines += [f"- {_code(path, 300)}" for path in report.migrations]
    return _fit(lines)


def _fit(lines: Sequence[str]) -> str:
    """The lines joined, cut at a line boundary with a note when they would exceed the summary's cap."""
    note = "\n\n… (cut to fit the check run summary)\n"
    kept: list[str] = []
    size = 0
    for line in lines:
        if size + len(line) + 1 > MAX_SUMMARY_CHARS - len(note):
            return "\n".join(kept) + note
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept) + "\n"
