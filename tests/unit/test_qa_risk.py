"""The QA agent's pure risk report: each analysis, secrets, scoring edges, Markdown safety and caps.

Credentials are assembled at run time from pieces, so this file holds no literal token: the QA agent
(and any other scanner) reading this repository's own pull requests has nothing to flag here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import string
from dataclasses import replace
from pathlib import Path

import pytest

from functions.qa_agent.risk import (
    AWS_KEY_ID,
    GCP_SERVICE_ACCOUNT_KEY,
    GITHUB_PAT,
    GITHUB_TOKEN,
    GOOGLE_API_KEY,
    MAX_FILES,
    MAX_LISTED,
    MAX_PATCH_BYTES,
    MAX_SUMMARY_CHARS,
    MAX_TITLE_CHARS,
    POINTS,
    PRIVATE_KEY,
    SLACK_TOKEN,
    Checklist,
    DependencyChange,
    PullFacts,
    PullFile,
    Reason,
    RiskConfig,
    RiskReport,
    SecretFinding,
    assess,
    check_conclusion,
    dependency_changes,
    is_migration,
    is_source,
    is_test,
    parse_checklist,
    parse_linked_issues,
    report_markdown,
    report_title,
    scan_secrets,
)
from functions.test_agent.gates import neutralise
from shared.errors import InvalidInput

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "qa_agent"
CONFIG = RiskConfig(protected_paths=(".github/workflows/**", "infra/"))
LINKED = "Closes #1"
ALNUM = string.ascii_letters + string.digits


def random_text(seed: str, length: int, alphabet: str = ALNUM) -> str:
    """Deterministic text that looks random, so it passes the placeholder check like a real token."""
    out, counter = [], 0
    while len(out) < length:
        digest = hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        out.extend(alphabet[byte % len(alphabet)] for byte in digest)
        counter += 1
    return "".join(out[:length])


def github_token() -> str:
    return "gh" + "p_" + random_text("ghp", 36)


def fine_grained_pat() -> str:
    return "github" + "_pat_" + random_text("pat1", 22) + "_" + random_text("pat2", 59)


def aws_key_id() -> str:
    return "AK" + "IA" + random_text("aws", 16, string.ascii_uppercase + string.digits)


def google_api_key() -> str:
    return "AI" + "za" + random_text("google", 35, ALNUM + "_-")


def slack_token() -> str:
    return "xo" + "xb-" + random_text("s1", 12, string.digits) + "-" + random_text("s2", 24)


PEM_HEADER = "-----BEGIN " + "RSA PRIVATE KEY-----"
PLAIN_PEM_HEADER = "-----BEGIN " + "PRIVATE KEY-----"
KEY_MATERIAL = base64.b64encode(hashlib.sha512(b"key").digest()[:48]).decode()  # one 64-character PEM line


def hunk(*lines: str, new_start: int = 1) -> str:
    """One hunk of a GitHub patch; the counts in the header do not matter to the parser."""
    return f"@@ -{new_start},3 +{new_start},{len(lines)} @@\n" + "\n".join(lines)


def added(*lines: str, new_start: int = 1) -> str:
    return hunk(*("+" + line for line in lines), new_start=new_start)


def pull_file(name: str, patch: str | None = "", status: str = "modified", additions: int | None = None,
              deletions: int = 0, previous: str | None = None) -> PullFile:
    """A file; without a patch given, one of `additions` added lines (None: GitHub sent no patch)."""
    if patch == "" and additions:
        patch = added(*(f"line {number}" for number in range(additions)))
    if additions is None:
        additions = sum(1 for line in (patch or "").split("\n") if line.startswith("+"))
    return PullFile(name, status, additions, deletions, patch, previous)


def facts(*files: PullFile, body: str = LINKED, commits: int = 1, truncated: bool = False) -> PullFacts:
    return PullFacts(7, "A change", body, "octocat", tuple(files), commits, truncated)


def codes(report: RiskReport) -> dict[str, int]:
    return {reason.code: reason.points for reason in report.reasons}


# ---------------------------------------------------------------------------------------------
# A real pull request, as GitHub's "list pull request files" returns it


def fixture_files() -> tuple[PullFile, ...]:
    entries = json.loads((FIXTURES / "pull_files.json").read_text())
    return tuple(PullFile(entry["filename"], entry["status"], entry["additions"], entry["deletions"],
                          entry.get("patch"), entry.get("previous_filename")) for entry in entries)


def test_real_pull_request_files():
    report = assess(facts(*fixture_files(), body="Adds email.\n\n- [x] Tests\n- [ ] Docs\n\nFixes #41",
                          commits=3), CONFIG)
    assert codes(report) == {"protected": 30, "migrations": 20, "tests.missing": 20, "dependencies": 10,
                             "dependencies.downgraded": 5, "patch.missing": 5, "checklist.unchecked": 3,
                             "issue.linked": 0, "size.small": 0}
    assert (report.score, report.level, report.needs_approval, report.fails) == (93, "high", True, False)
    assert "docs/logo.png" in next(r.text for r in report.reasons if r.code == "patch.missing")
    assert report.protected == (".github/workflows/ci.yml",)
    assert report.migrations == ("app/migrations/0002_user_email.py",)
    assert report.checklist == Checklist(total=2, done=1)
    assert report.linked_issues == (41,)
    assert {(c.manifest, c.package, c.old_version, c.new_version, c.change) for c in report.dependencies} == {
        ("Cargo.toml", "anyhow", "1.0.75", "1.0.79", "upgraded"),
        ("Cargo.toml", "thiserror", None, "1.0.56", "added"),
        ("Cargo.toml", "tokio", "1.34", "1.35", "upgraded"),
        ("Gemfile", "pg", "~> 1.5", "~> 1.4", "downgraded"),
        ("Gemfile", "sidekiq", None, "~> 7.2", "added"),
        ("go.mod", "github.com/google/uuid", "v1.5.0", "v1.6.0", "upgraded"),
        ("go.mod", "golang.org/x/sync", "v0.5.0", "v0.4.0", "downgraded"),
        ("package.json", "axios", None, "^1.6.7", "added"),
        ("package.json", "react", "^18.2.0", "^18.3.1", "upgraded"),
        ("package.json", "vite", "^5.0.0", "^5.2.0", "upgraded"),
        ("pyproject.toml", "httpx", ">=0.26", ">=0.27", "upgraded"),
        ("pyproject.toml", "structlog", None, ">=24.1", "added"),
        ("requirements.txt", "gunicorn", "21.2.0", None, "removed"),
        ("requirements.txt", "pyyaml", "6.0.1", "5.4.1", "downgraded"),
        ("requirements.txt", "requests", "2.31.0", "2.32.3", "upgraded"),
        ("requirements.txt", "structlog", None, "24.1.0", "added"),
    }
    assert check_conclusion(report) == "action_required"


# ---------------------------------------------------------------------------------------------
# Size


SIZES = [
    ("empty", 0, 0, False, {"size.small": 0}),
    ("one line", 1, 1, False, {"size.small": 0}),
    ("exactly small", 200, 1, False, {"size.small": 0}),
    ("just above small", 201, 1, False, {"size.medium": 10}),
    ("just below large", 999, 1, False, {"size.medium": 10}),
    ("exactly large", 1000, 1, False, {"size.large": 25}),
    ("many files", 51, 51, False, {"size.small": 0, "size.files": 5}),
    ("fifty files is not many", 50, 50, False, {"size.small": 0}),
    ("truncated listing", 10, 1, True, {"size.small": 0, "size.truncated": 15}),
]


@pytest.mark.parametrize(("lines", "files", "truncated", "expected"), [case[1:] for case in SIZES],
                         ids=[case[0] for case in SIZES])
def test_size(lines, files, truncated, expected):
    # Documentation files: no source, no tests, no manifests; a linked issue, so only size counts.
    share, rest = divmod(lines, files) if files else (0, 0)
    pulled = [PullFile(f"docs/page{index}.md", "modified", share + (rest if index == 0 else 0), 0, None)
              for index in range(files)]
    report = assess(facts(*pulled, truncated=truncated), CONFIG)
    size_codes = {code: points for code, points in codes(report).items() if code.startswith("size.")}
    assert size_codes == expected
    if truncated:
        assert any("partial" in reason.text for reason in report.reasons)


def test_size_thresholds_come_from_the_config():
    pulled = PullFile("docs/a.md", "modified", 30, 20, None)
    assert "size.medium" in codes(assess(facts(pulled), replace(CONFIG, size_small=49, size_large=60)))
    assert "size.large" in codes(assess(facts(pulled), replace(CONFIG, size_small=10, size_large=50)))
    assert "size.small" in codes(assess(facts(pulled), replace(CONFIG, size_small=50, size_large=60)))


# ---------------------------------------------------------------------------------------------
# Protected paths


PROTECTED = [
    ("workflow", ".github/workflows/ci.yml", None, (".github/workflows/ci.yml",)),
    ("case differs", ".GitHub/Workflows/CI.yml", None, (".GitHub/Workflows/CI.yml",)),
    ("directory with trailing slash", "infra/main.tf", None, ("infra/main.tf",)),
    ("renamed out of a protected directory", "ci-old.yml", ".github/workflows/ci.yml",
     (".github/workflows/ci.yml",)),
    ("similar but not protected", ".github/dependabot.yml", None, ()),
    ("prefix is not a directory", "infrastructure/main.tf", None, ()),
]


@pytest.mark.parametrize(("path", "previous", "expected"), [case[1:] for case in PROTECTED],
                         ids=[case[0] for case in PROTECTED])
def test_protected_paths(path, previous, expected):
    report = assess(facts(pull_file(path, additions=1, previous=previous,
                                    status="renamed" if previous else "modified")), CONFIG)
    assert report.protected == expected
    assert ("protected" in codes(report)) == bool(expected)
    if expected:
        assert codes(report)["protected"] == 30


def test_protected_paths_are_each_listed_and_capped():
    pulled = [pull_file(f".github/workflows/w{index:03}.yml", additions=1)
              for index in range(MAX_LISTED + 20)]
    report = assess(facts(*pulled), CONFIG)
    assert len(report.protected) == MAX_LISTED
    assert report.protected[0] == ".github/workflows/w000.yml"
    reason = next(reason for reason in report.reasons if reason.code == "protected")
    assert f"{MAX_LISTED + 20} protected paths" in reason.text
    assert "and 110 more" in reason.text
    assert codes(report)["protected"] == 30  # the points do not grow with the count


# ---------------------------------------------------------------------------------------------
# Dependencies

DEPENDENCIES = [
    ("requirements pin upgraded",
     "requirements.txt", hunk("-requests==2.31.0", "+requests==2.32.3"),
     [("requests", "2.31.0", "2.32.3", "upgraded")]),
    ("requirements normalised names, markers, comments and hashes",
     "requirements/dev.txt",
     hunk("-Django==4.2  # web", "+django==4.1 ; python_version >= '3.10'",
          "+black==24.1.0 --hash=sha256:abc", "+-r base.txt", "+# just a comment", "+-e ."),
     [("black", None, "24.1.0", "added"), ("django", "4.2", "4.1", "downgraded")]),
    ("constraints file with ranges",
     "constraints.txt", hunk("-urllib3>=1.26,<2", "+urllib3>=2.0,<3"),
     [("urllib3", ">=1.26,<2", ">=2.0,<3", "upgraded")]),
    ("dev requirements, removed, unpinned, direct reference",
     "dev-requirements.txt", hunk("-pytest==8.0.0", "+hypothesis", "+mylib @ git+https://host/x.git"),
     [("hypothesis", None, None, "added"), ("mylib", None, None, "added"),
      ("pytest", "8.0.0", None, "removed")]),
    ("requirement moved, not changed",
     "requirements.txt", hunk("-flask==3.0.0", " gunicorn==21.2.0", "+flask==3.0.0"), []),
    ("pyproject project dependencies",
     "pyproject.toml",
     hunk(" [project]", ' name = "svc"', '-version = "0.1.0"', '+version = "0.2.0"', " dependencies = [",
          '-    "httpx>=0.26",', '+    "httpx>=0.27",', '+    "rich",', " ]"),
     [("httpx", ">=0.26", ">=0.27", "upgraded"), ("rich", None, None, "added")]),
    ("pyproject optional dependencies on one line",
     "pyproject.toml",
     hunk(" [project.optional-dependencies]", '-dev = ["pytest>=7"]', '+dev = ["pytest>=8", "ruff>=0.4"]'),
     [("pytest", ">=7", ">=8", "upgraded"), ("ruff", None, ">=0.4", "added")]),
    ("pyproject poetry style",
     "pyproject.toml",
     hunk(" [tool.poetry.dependencies]", ' python = "^3.11"', '-pydantic = "^1.10"',
          '+pydantic = { version = "^2.6", extras = ["email"] }', '+mylib = { path = "../mylib" }'),
     [("mylib", None, None, "added"), ("pydantic", "^1.10", "^2.6", "upgraded")]),
    ("pyproject tool lists and versions are not packages",
     "pyproject.toml",
     hunk(" [tool.ruff.lint]", " select = [", '+    "E501",', " ]", " [tool.ruff]",
          '-target-version = "py310"', '+target-version = "py311"', " [tool.pytest.ini_options]",
          '+minversion = "8.0"'),
     []),
    ("pyproject with the section out of sight",
     "pyproject.toml",
     hunk('-version = "0.1.0"', '+version = "0.2.0"', '-requires-python = ">=3.10"', '+requests = "^2.31"',
          '+    "E501",', '+    "attrs>=23",'),
     [("attrs", None, ">=23", "added"), ("requests", None, "^2.31", "added")]),
    ("package.json dependencies and devDependencies",
     "web/package.json",
     hunk('   "version": "1.4.0",', '   "dependencies": {', '-    "react": "^18.2.0",',
          '+    "react": "^18.3.1",', '+    "@scope/ui": "~2.0.0",', "   },", '   "devDependencies": {',
          '-    "vite": "^6.0.0"',
          '+    "vite": "^5.4.0"', "   },", '   "scripts": {', '+    "test": "vitest 1.2"', "   }"),
     [("@scope/ui", None, "~2.0.0", "added"), ("react", "^18.2.0", "^18.3.1", "upgraded"),
      ("vite", "^6.0.0", "^5.4.0", "downgraded")]),
    ("package.json top level fields are not packages",
     "package.json", hunk('-  "version": "1.4.0",', '+  "version": "1.5.0",', '+  "main": "index.js",'), []),
    ("package.json git dependency keeps no URL",
     "package.json", hunk('   "dependencies": {', '+    "lib": "git+https://host/org/lib.git#v1"', "   }"),
     [("lib", None, "(url)", "added")]),
    ("go.mod require block and single require",
     "go.mod",
     hunk(" require (", "-\tgithub.com/google/uuid v1.5.0", "+\tgithub.com/google/uuid v1.6.0",
          "+\tgolang.org/x/net v0.20.0 // indirect", " )", "+require example.com/one v0.1.0",
          " replace (", "+\texample.com/old => example.com/new v1.0.0", " )", "-go 1.21", "+go 1.22"),
     [("example.com/one", None, "v0.1.0", "added"),
      ("github.com/google/uuid", "v1.5.0", "v1.6.0", "upgraded"),
      ("golang.org/x/net", None, "v0.20.0", "added")]),
    ("Cargo dependencies, tables and package version",
     "crates/tool/Cargo.toml",
     hunk(" [package]", '-version = "0.3.0"', '+version = "0.4.0"', '+edition = "2021"', " [dependencies]",
          '-anyhow = "1.0.75"', '+anyhow = "1.0.79"', '+serde = { version = "1.0", features = ["derive"] }',
          " [dependencies.tokio]", '-version = "1.34"', '+version = "1.35"',
          " [target.'cfg(unix)'.dev-dependencies]", '+nix = "0.27"'),
     [("anyhow", "1.0.75", "1.0.79", "upgraded"), ("nix", None, "0.27", "added"),
      ("serde", None, "1.0", "added"), ("tokio", "1.34", "1.35", "upgraded")]),
    ("Gemfile",
     "Gemfile",
     hunk('-gem "rails", "~> 7.0.8"', '+gem "rails", "~> 7.1", ">= 7.1.2"', "+gem 'pg', require: false",
          '-gem "puma"'),
     [("pg", None, None, "added"), ("puma", None, None, "removed"),
      ("rails", "~> 7.0.8", "~> 7.1, >= 7.1.2", "upgraded")]),
    ("Pipfile",
     "Pipfile", hunk(" [packages]", '-requests = "*"', '+requests = "==2.31.0"', " [requires]",
                     '+python_version = "3.12"'),
     [("requests", "*", "==2.31.0", "changed")]),
    ("not a manifest", "src/requirements.py", hunk("+requests==2.0"), []),
]


@pytest.mark.parametrize(("path", "patch", "expected"), [case[1:] for case in DEPENDENCIES],
                         ids=[case[0] for case in DEPENDENCIES])
def test_dependency_changes(path, patch, expected):
    changes = dependency_changes(path, patch)
    assert [(c.package, c.old_version, c.new_version, c.change) for c in changes] == expected
    assert all(change.manifest == path for change in changes)


PATHOLOGICAL = [
    # Each would take 2**60 steps if a specifier could split two ways (">" "=1" or ">=" "1").
    ("requirement range without its parenthesis", "requirements.txt", "a (" + ">=1," * 60),
    ("requirement range ending in junk", "requirements.txt", "a " + ">=1," * 60 + " x"),
    ("pyproject list item", "pyproject.toml", '    "a' + ">=1," * 60 + ' x",'),
    ("quotes", "package.json", '"' * 5000),
    ("many gem versions", "Gemfile", "gem 'a'" + ", '1'" * 5000),
]


@pytest.mark.timeout(10)
@pytest.mark.parametrize(("path", "line"), [case[1:] for case in PATHOLOGICAL],
                         ids=[case[0] for case in PATHOLOGICAL])
def test_hostile_manifest_lines_parse_quickly(path, line):
    dependency_changes(path, hunk("+" + line, "-" + line))


def test_dependency_reasons_points_and_lockfile_only():
    upgraded = pull_file("requirements.txt", hunk("-a==1.0", "+a==2.0"))
    downgraded = pull_file("requirements.txt", hunk("-a==2.0", "+a==1.0"))
    lock_only = pull_file("poetry.lock", hunk("-x", "+y"))
    assert {k: v for k, v in codes(assess(facts(upgraded), CONFIG)).items() if k.startswith("dep")} == {
        "dependencies": 10}
    assert {k: v for k, v in codes(assess(facts(downgraded), CONFIG)).items() if k.startswith("dep")} == {
        "dependencies": 10, "dependencies.downgraded": 5}
    report = assess(facts(lock_only), CONFIG)
    assert {k: v for k, v in codes(report).items() if k.startswith("dep")} == {"dependencies.lockfile": 5}
    assert report.dependencies == ()
    assert "poetry.lock" in next(r.text for r in report.reasons if r.code == "dependencies.lockfile")
    # A lockfile updated with its manifest is expected: noted, no extra points.
    both = assess(facts(upgraded, lock_only), CONFIG)
    assert "dependencies.lockfile" not in codes(both)
    assert "Lockfiles updated: poetry.lock" in next(r.text for r in both.reasons if r.code == "dependencies")


# ---------------------------------------------------------------------------------------------
# Migrations, tests and kinds of file


MIGRATIONS = [
    ("django", "shop/orders/migrations/0003_add_index.py", True),
    ("top-level migrations", "migrations/001_init.sql", True),
    ("alembic", "alembic/versions/4f2e_add_users.py", True),
    ("rails", "db/migrate/20240101000000_create_users.rb", True),
    ("plain sql", "schema/seed.sql", True),
    ("sql case differs", "schema/SEED.SQL", True),
    ("django migrations package marker", "shop/migrations/__init__.py", False),
    ("word in a file name", "docs/migrations.md", False),
    ("ordinary source", "shop/models.py", False),
]


@pytest.mark.parametrize(("path", "expected"), [case[1:] for case in MIGRATIONS],
                         ids=[case[0] for case in MIGRATIONS])
def test_migrations(path, expected):
    assert is_migration(path) is expected
    report = assess(facts(pull_file(path, additions=3, status="added")), CONFIG)
    assert report.migrations == ((path,) if expected else ())
    assert codes(report).get("migrations") == (20 if expected else None)


KINDS = [
    ("python source", "app/core.py", True, False),
    ("python test by name", "app/test_core.py", False, True),
    ("python test in tests dir", "tests/unit/helpers.py", False, True),
    ("go test", "pkg/core_test.go", False, True),
    ("ts spec", "web/src/app.spec.ts", False, True),
    ("js test", "web/src/app.test.js", False, True),
    ("java test", "src/test/java/CoreTest.java", False, True),
    ("ruby spec", "spec/models/user_spec.rb", False, True),
    ("conftest", "conftest.py", False, True),
    ("markdown", "README.md", False, False),
    ("yaml", "deploy/values.yaml", False, False),
    ("no extension", "Makefile", False, False),
]


@pytest.mark.parametrize(("path", "source", "test"), [case[1:] for case in KINDS],
                         ids=[case[0] for case in KINDS])
def test_file_kinds(path, source, test):
    assert (is_source(path), is_test(path)) == (source, test)


TESTS_TOUCHED = [
    ("source without tests", [pull_file("app/core.py", additions=5)], {"tests.missing": 20}),
    ("source with tests",
     [pull_file("app/core.py", additions=5), pull_file("tests/test_core.py", additions=5)],
     {"tests.changed": 0}),
    ("only tests", [pull_file("tests/test_core.py", additions=5)], {"tests.changed": 0}),
    ("only docs", [pull_file("docs/index.md", additions=5)], {}),
    ("source deleted", [pull_file("app/old.py", status="removed", additions=0, deletions=9)],
     {"tests.missing": 20}),
    ("pure rename of source", [pull_file("app/new.py", status="renamed", additions=0, previous="app/old.py")],
     {}),
    ("test renamed", [pull_file("app/core.py", additions=1),
                      pull_file("tests/test_new.py", status="renamed", additions=0,
                                previous="tests/test_old.py")],
     {"tests.changed": 0}),
]


@pytest.mark.parametrize(("files", "expected"), [case[1:] for case in TESTS_TOUCHED],
                         ids=[case[0] for case in TESTS_TOUCHED])
def test_tests_touched(files, expected):
    report = assess(facts(*files), CONFIG)
    assert {code: points for code, points in codes(report).items() if code.startswith("tests.")} == expected


# ---------------------------------------------------------------------------------------------
# The body: checklist and linked issues


CHECKLISTS = [
    ("none", "Just a description.", Checklist(0, 0), {}),
    ("all done", "- [x] Tests\n- [X] Docs", Checklist(2, 2), {"checklist.complete": 0}),
    ("one unchecked", "- [x] Tests\n- [ ] Docs", Checklist(2, 1), {"checklist.unchecked": 3}),
    ("stars, pluses and numbers", "* [ ] a\n+ [x] b\n1. [ ] c\n  - [x] nested", Checklist(4, 2),
     {"checklist.unchecked": 6}),
    ("capped below missing tests", "\n".join(["- [ ] item"] * 9), Checklist(9, 0),
     {"checklist.unchecked": 10}),
    ("code blocks do not count", "- [x] real\n```\n- [ ] example\n```\n`- [ ] inline`", Checklist(1, 1),
     {"checklist.complete": 0}),
    ("not task items", "- [link](x)\n-[ ] no space\n- [y] other mark\n[ ] bare", Checklist(0, 0), {}),
]


@pytest.mark.parametrize(("body", "expected", "points"), [case[1:] for case in CHECKLISTS],
                         ids=[case[0] for case in CHECKLISTS])
def test_checklist(body, expected, points):
    assert parse_checklist(body) == expected
    report = assess(facts(body=body + "\n\nCloses #1"), CONFIG)
    assert report.checklist == expected
    assert {code: value for code, value in codes(report).items() if code.startswith("checklist.")} == points
    assert max(points.values(), default=0) < POINTS["tests.missing"]


ISSUES = [
    ("closes", "Closes #12", (12,)),
    ("fixes with colon, lower case", "fixes: #3", (3,)),
    ("resolved, several, sorted and unique", "Resolved #9. Also fix #2 and closes #9.", (2, 9)),
    ("other repository", "Fixes octo-org/api#77", (77,)),
    ("issue url", "Resolves https://github.com/octo-org/api/issues/5", (5,)),
    ("mention is not closing", "See #12 and refs #13", ()),
    ("keyword inside a word", "prefixes #4 and unfixed #5", ()),
    ("in code", "```\ncloses #8\n```\n`fixes #9`", ()),
    ("number zero", "closes #0", ()),
    ("empty", "", ()),
]


@pytest.mark.parametrize(("body", "expected"), [case[1:] for case in ISSUES],
                         ids=[case[0] for case in ISSUES])
def test_linked_issues(body, expected):
    assert parse_linked_issues(body) == expected
    report = assess(facts(body=body), CONFIG)
    assert report.linked_issues == expected
    assert codes(report).get("issue.unlinked") == (None if expected else 10)
    assert codes(report).get("issue.linked") == (0 if expected else None)


# ---------------------------------------------------------------------------------------------
# Secrets


def regex_source_lines() -> list[str]:
    return [
        'GITHUB = re.compile(r"gh[pousr]_[A-Za-z0-9]{36}")',
        'CLASSIC = r"ghp_[A-Za-z0-9]{36}"',
        'PAT = r"github_pat_[A-Za-z0-9_]{82}"',
        'AWS = re.compile(r"AKIA[0-9A-Z]{16}")',
        'GOOGLE = r"AIza[0-9A-Za-z_-]{35}"',
        'SLACK = r"xox[abpr]-[0-9]+-[A-Za-z0-9-]+"',
        'PEM = r"-----BEGIN (RSA |EC |OPENSSH |)PRIVATE KEY-----"',
    ]


SECRET_LINES = [
    ("github token", lambda: [f'TOKEN = "{github_token()}"'], [GITHUB_TOKEN]),
    ("github token in a url", lambda: [f"https://x-access-token:{github_token()}@github.com/o/r.git"],
     [GITHUB_TOKEN]),
    ("other github prefixes", lambda: [("gh" + p + "_" + random_text(p, 36)) for p in "ousr"],
     [GITHUB_TOKEN] * 4),
    ("fine-grained pat", lambda: [f"export GH={fine_grained_pat()}"], [GITHUB_PAT]),
    ("aws key id", lambda: [f"aws_access_key_id = {aws_key_id()}"], [AWS_KEY_ID]),
    ("google api key", lambda: [f'"apiKey": "{google_api_key()}",'], [GOOGLE_API_KEY]),
    ("slack token", lambda: [f"SLACK_BOT_TOKEN={slack_token()}"], [SLACK_TOKEN]),
    ("pem block", lambda: [PEM_HEADER, KEY_MATERIAL, KEY_MATERIAL], [PRIVATE_KEY]),
    ("pem in a string literal", lambda: [f'KEY = ("{PLAIN_PEM_HEADER}\\n"', f'       "{KEY_MATERIAL}\\n"'],
     [PRIVATE_KEY]),
    ("gcp service account json", lambda: [
        '  "type": "service_account",',
        f'  "private_key": "{PLAIN_PEM_HEADER}\\n{KEY_MATERIAL}\\n{KEY_MATERIAL}\\n'
        '-----END PRIVATE KEY-----\\n",',
    ], [GCP_SERVICE_ACCOUNT_KEY]),
    ("regex source", regex_source_lines, []),
    ("the word token", lambda: ["token = get_token()", "github_token: ${{ secrets.GITHUB_TOKEN }}",
                                "# rotate the Slack token and the AWS key"], []),
    ("placeholders", lambda: ["gh" + "p_" + "x" * 36, "AKIA" + "IOSFODNN7EXAMPLE", "gh" + "p_" + "0" * 36,
                              "xo" + "xb-0000000000-000000000000-xxxxxxxxxxxxxxxxxxxxxxxx"], []),
    ("too short or too long for its kind",
     lambda: ["gh" + "p_" + random_text("short", 35),
              "AK" + "IA" + random_text("long", 17, string.ascii_uppercase)],
     []),
    ("glued to a word", lambda: ["xgh" + "p_" + random_text("glued", 36)], []),
    ("pem header without key material", lambda: [f'if text.startswith("{PEM_HEADER}"):', "    return True"],
     []),
    ("gcp placeholder",
     lambda: [f'"private_key": "{PLAIN_PEM_HEADER}\\n...\\n-----END PRIVATE KEY-----\\n"'], []),
]


@pytest.mark.parametrize(("make_lines", "expected"), [case[1:] for case in SECRET_LINES],
                         ids=[case[0] for case in SECRET_LINES])
def test_secret_kinds(make_lines, expected):
    findings = scan_secrets("conf/settings.py", added(*make_lines()))
    assert [finding.kind for finding in findings] == expected


def test_secret_line_numbers_across_hunks():
    token, key = github_token(), aws_key_id()
    patch = "\n".join([
        "@@ -1,4 +1,5 @@",
        " import os",
        "-OLD = 1",
        f'+TOKEN = "{token}"',
        "+NEW = 2",
        " ",
        " def main():",
        "@@ -40,6 +41,8 @@ def main():",
        "     a = 1",
        "-    b = 2",
        "-    c = 3",
        "+    b = 20",
        f'+    key = "{key}"',
        "+    c = 30",
        "\\ No newline at end of file",
        f'+    again = "{token}"',
        "@@ -100 +103 @@",
        f"-{key}",
        f"+{slack_token()}",
    ])
    assert scan_secrets("app/main.py", patch) == (
        SecretFinding("app/main.py", 2, GITHUB_TOKEN),
        SecretFinding("app/main.py", 43, AWS_KEY_ID),
        SecretFinding("app/main.py", 45, GITHUB_TOKEN),
        SecretFinding("app/main.py", 103, SLACK_TOKEN),
    )


def test_carriage_returns_and_line_separators_do_not_shift_line_numbers():
    patch = "@@ -1,2 +1,3 @@\n a\r\n+b\u2028c\r\n+x = '" + github_token() + "'\r"
    assert scan_secrets("a.txt", patch) == (SecretFinding("a.txt", 3, GITHUB_TOKEN),)


def test_one_finding_per_line_and_kind():
    token = github_token()
    assert scan_secrets("a.py", added(f"{token} {token}")) == (SecretFinding("a.py", 1, GITHUB_TOKEN),)


REMOVALS = [
    ("deleted lines only", lambda: pull_file("conf/.env", hunk(f"-TOKEN={github_token()}", " KEEP=1"),
                                             additions=0, deletions=1)),
    ("file removed", lambda: pull_file("conf/key.pem", hunk(f"-{PEM_HEADER}", f"-{KEY_MATERIAL}"),
                                       status="removed", additions=0, deletions=2)),
    ("context line", lambda: pull_file("conf/.env", hunk(f" TOKEN={github_token()}", "+KEEP=1"))),
]


@pytest.mark.parametrize("make_file", [case[1] for case in REMOVALS], ids=[case[0] for case in REMOVALS])
def test_removing_a_secret_is_not_flagged(make_file):
    report = assess(facts(make_file()), CONFIG)
    assert (report.secrets, report.fails) == ((), False)
    assert check_conclusion(report) != "failure"


def test_a_secret_fails_the_check_instead_of_asking_for_approval():
    report = assess(facts(pull_file("app/settings.py", added(f'KEY = "{aws_key_id()}"'))), CONFIG)
    assert report.secrets == (SecretFinding("app/settings.py", 1, AWS_KEY_ID),)
    assert codes(report)["secret"] == 50
    assert (report.fails, report.needs_approval) == (True, False)
    assert check_conclusion(report) == "failure"
    assert "fails" in report_title(report)
    markdown = report_markdown(report)
    assert "`app/settings.py:1` (AWS access key id)" in markdown
    assert "Rotate it" in markdown and "Remove it" in markdown


def test_a_secret_value_never_appears_in_the_report():
    token, pat, key = github_token(), fine_grained_pat(), aws_key_id()
    google, slack = google_api_key(), slack_token()
    values = [token, pat, key, google, slack, KEY_MATERIAL]
    files = [
        pull_file("app/settings.py", added(f'TOKEN = "{token}"', f"PAT={pat}", f"KEY={key}")),
        pull_file("web/config.js", added(f'apiKey: "{google}"', f"slack: '{slack}'")),
        pull_file("deploy/key.pem", added(PEM_HEADER, KEY_MATERIAL, "-----END RSA PRIVATE KEY-----"),
                  status="added"),
        # Where pull request text is kept: a file name, a package name and a version.
        pull_file(f"infra/{token}.txt", added("hello"), status="added"),
        pull_file("package.json", hunk('   "dependencies": {', f'+    "{token}": "^1.0.0",',
                                       f'+    "lib": "{slack}"', "   }")),
        pull_file(".github/workflows/leak.yml", added(f"env: {{ T: {token} }}")),
    ]
    report = assess(facts(*files), CONFIG)
    assert {finding.kind for finding in report.secrets} == {
        GITHUB_TOKEN, GITHUB_PAT, AWS_KEY_ID, GOOGLE_API_KEY, SLACK_TOKEN, PRIVATE_KEY}
    published = [repr(report), report_markdown(report), report_title(report)]
    for text in published:
        for value in values:
            assert value not in text
            assert value[4:] not in text  # not even without its prefix
    assert "infra/[redacted].txt" in report.protected
    assert {change.package for change in report.dependencies} == {"[redacted]", "lib"}


# ---------------------------------------------------------------------------------------------
# Markdown safety


HOSTILE_NAMES = [
    "@octo-org/security.py",
    "docs](javascript:alert(1)).py",
    "a\nb\n## Approved by admin.py",
    "`code` span.py",
    "<img src=x onerror=alert(1)>.py",
    "a|b|c.py",
    "[click](https://evil.example).py",
]


def hostile_report() -> tuple[RiskReport, str]:
    files = []
    for index, name in enumerate(HOSTILE_NAMES):
        files.append(pull_file(f"infra/{name}", added("x = 1")))
        files.append(pull_file(f"app/migrations/{index}{name}", added("x = 1"), status="added"))
        files.append(pull_file(f"app/{index}{name}", added(f"T = '{github_token()}'")))
    files.append(pull_file("package.json", hunk('   "dependencies": {',
                                               *(f'+    "{name}": "^1.0.{i}",' for i, name in
                                                 enumerate(n.replace("\n", " ").replace('"', "") for n in
                                                           HOSTILE_NAMES)),
                                               '+    "ok": "`](javascript:x) @admin"', "   }")))
    report = assess(facts(*files), CONFIG)
    return report, report_markdown(report)


def test_hostile_names_reach_every_list():
    report, _ = hostile_report()
    assert len(report.protected) == len(HOSTILE_NAMES)
    assert len(report.migrations) == len(HOSTILE_NAMES)
    assert len(report.secrets) == len(HOSTILE_NAMES)
    assert len(report.dependencies) == len(HOSTILE_NAMES) + 1


@pytest.mark.parametrize("rendered", ["markdown", "title"])
def test_hostile_names_are_neutralised(rendered):
    report, markdown = hostile_report()
    text = markdown if rendered == "markdown" else report_title(report)
    assert re.search("@(?!\u200b)", text) is None  # no mention
    assert "](javascript:" not in text and "](https:" not in text  # no link
    assert "<img" not in text and "<" not in text.replace("<task>", "")  # no HTML
    assert "\n## Approved" not in text and "\nb\n" not in text  # no line or heading breaks
    for line in text.split("\n"):
        assert line.count("`") % 2 == 0, line  # every code span we open is closed
        if line.startswith("|"):
            assert line.count("|") in (3, 6), line  # no table broken by a "|" in a name
    for name in HOSTILE_NAMES:
        if rendered == "markdown":
            assert neutralise(f"infra/{name}", 300) in text
        assert f"infra/{name}" not in text


def test_reason_texts_are_neutralised_in_the_report_too():
    report, _ = hostile_report()
    for reason in report.reasons:
        assert reason.text == neutralise(reason.text, len(reason.text))


# ---------------------------------------------------------------------------------------------
# Scores and levels


def workflow() -> PullFile:
    return pull_file(".github/workflows/ci.yml", additions=1)  # protected: 30


EDGES = [
    # protected 30 with a linked issue
    ("medium at 30", [workflow()], LINKED, CONFIG, 30, "medium"),
    # missing tests 20 + three unchecked items 9
    ("low at 29", [pull_file("app/a.py", additions=1)], "- [ ] a\n- [ ] b\n- [ ] c\n" + LINKED, CONFIG, 29,
     "low"),
    # protected 30 + migration 20 + missing tests 20
    ("high at 70", [workflow(), pull_file("app/migrations/0002_x.py", additions=3, status="added")], LINKED,
     CONFIG, 70, "high"),
    ("medium at 70 when high is 71", [workflow(), pull_file("app/migrations/0002_x.py", additions=3,
                                                            status="added")],
     LINKED, replace(CONFIG, high_risk_score=71), 70, "medium"),
    ("high above a lowered threshold", [workflow(), pull_file("app/migrations/0002_x.py", additions=3,
                                                          status="added")],
     "- [ ] a\n" + LINKED, replace(CONFIG, high_risk_score=69), 73, "high"),
    ("empty pull request", [], "", CONFIG, 10, "low"),
    # protected 30 + large 25 + missing tests 20 + many files 5 + no issue 10 + migration 20: 110
    ("capped at 100", [workflow(), pull_file("app/migrations/0002_x.py", additions=3, status="added"),
                       *(pull_file(f"app/m{index}.py", additions=20) for index in range(50))],
     "", CONFIG, 100, "high"),
]


@pytest.mark.parametrize(("files", "body", "config", "score", "level"), [case[1:] for case in EDGES],
                         ids=[case[0] for case in EDGES])
def test_score_and_level_edges(files, body, config, score, level):
    report = assess(facts(*files, body=body), config)
    assert (report.score, report.level) == (score, level)
    assert report.needs_approval is (score >= config.high_risk_score)
    expected = "action_required" if report.needs_approval else "success"
    assert check_conclusion(report) == expected


def test_score_is_the_capped_sum_of_the_reasons():
    for case in EDGES:
        report = assess(facts(*case[1], body=case[2]), case[3])
        assert report.score == min(100, sum(reason.points for reason in report.reasons))


def test_empty_pull_request():
    report = assess(facts(body=""), CONFIG)
    assert report == RiskReport(
        score=10, level="low",
        reasons=(Reason(10, "issue.unlinked", report.reasons[0].text),
                 Reason(0, "size.small", "Empty pull request: no changed files.")),
        secrets=(), dependencies=(), migrations=(), protected=(), checklist=Checklist(0, 0), linked_issues=(),
        needs_approval=False, fails=False,
    )
    assert check_conclusion(report) == "success"
    assert report_markdown(report).startswith("## 🟢 QA risk: low (10/100)\n")


def test_deterministic_and_ordered_by_points_then_code():
    make = lambda: facts(*fixture_files(), workflow(), body="- [ ] a")  # noqa: E731
    first, second = assess(make(), CONFIG), assess(make(), CONFIG)
    assert first == second
    assert report_markdown(first) == report_markdown(second)
    keys = [(-reason.points, reason.code) for reason in first.reasons]
    assert keys == sorted(keys)


CONCLUSIONS = [
    ("secret", True, False, "failure"),
    ("secret wins over approval", True, True, "failure"),
    ("high risk", False, True, "action_required"),
    ("fine", False, False, "success"),
]


@pytest.mark.parametrize(("fails", "needs_approval", "expected"), [case[1:] for case in CONCLUSIONS],
                         ids=[case[0] for case in CONCLUSIONS])
def test_check_conclusion(fails, needs_approval, expected):
    report = assess(facts(), CONFIG)
    assert check_conclusion(replace(report, fails=fails, needs_approval=needs_approval)) == expected


def test_high_risk_markdown_says_how_to_approve():
    migration = pull_file("app/migrations/0002_x.py", additions=3, status="added")
    report = assess(facts(workflow(), migration), CONFIG)
    markdown = report_markdown(report)
    assert markdown.startswith("## 🔴 QA risk: high (70/100)\n")
    assert "`/approve <task>`" in markdown
    assert "| 30 | Touches 1 protected path: .github/workflows/ci.yml. |" in markdown
    assert "- `.github/workflows/ci.yml`" in markdown
    assert "- `app/migrations/0002_x.py`" in markdown
    assert "needs a human's review" in report_title(report)


BAD_CONFIGS = [
    ("high score zero", replace(CONFIG, high_risk_score=0), "high_risk_score"),
    ("high score above 100", replace(CONFIG, high_risk_score=101), "high_risk_score"),
    ("high score bool", replace(CONFIG, high_risk_score=True), "high_risk_score"),
    ("negative size", replace(CONFIG, size_small=-1), "size_small"),
    ("small not below large", replace(CONFIG, size_small=1000), "size_small 1000 must be below"),
    ("protected paths a string", replace(CONFIG, protected_paths="infra/**"), "protected_paths"),
]


@pytest.mark.parametrize(("config", "message"), [case[1:] for case in BAD_CONFIGS],
                         ids=[case[0] for case in BAD_CONFIGS])
def test_bad_config_is_refused(config, message):
    with pytest.raises(InvalidInput, match=re.escape(message)):
        assess(facts(), config)


# ---------------------------------------------------------------------------------------------
# Caps


def test_files_beyond_the_cap_are_not_analysed():
    pulled = [pull_file(f"docs/p{index}.md", additions=1) for index in range(MAX_FILES)]
    pulled.append(pull_file(".github/workflows/late.yml", added(f"t: {github_token()}")))
    report = assess(facts(*pulled), CONFIG)
    assert (report.protected, report.secrets) == ((), ())
    partial = next(reason for reason in report.reasons if reason.code == "analysis.partial")
    assert "first 3,000 of 3,001 files" in partial.text
    assert partial.points == 10


def test_patch_text_beyond_the_budget_is_not_read_but_later_small_patches_are():
    filler = "+" + "x" * 99
    big = "@@ -0,0 +1,1 @@\n" + "\n".join([filler] * (MAX_PATCH_BYTES // 100 - 10))
    huge = pull_file("data/huge.txt", big, additions=MAX_PATCH_BYTES // 100)
    hidden = pull_file("data/also-huge.txt", big[:-200] + f"\n+{github_token()}", additions=1)
    small = pull_file("app/s.py", added(f"T = '{github_token()}'"))
    report = assess(facts(huge, hidden, small), CONFIG)
    assert report.secrets == (SecretFinding("app/s.py", 1, GITHUB_TOKEN),)
    partial = next(reason for reason in report.reasons if reason.code == "analysis.partial")
    assert "2 MB" in partial.text and "data/also-huge.txt" in partial.text


def test_files_without_a_patch_are_named():
    report = assess(facts(
        pull_file("docs/logo.png", None, status="added", additions=0),
        pull_file("data/big.csv", None, status="renamed", additions=9000, previous="big.csv"),
        pull_file("docs/moved.md", None, status="renamed", additions=0, previous="old.md"),
        pull_file("docs/gone.png", None, status="removed", additions=0),
    ), CONFIG)
    missing = next(reason for reason in report.reasons if reason.code == "patch.missing")
    assert missing.points == 5
    assert missing.text.startswith("2 files without a patch")
    assert "docs/logo.png" in missing.text and "data/big.csv" in missing.text
    assert "moved" not in missing.text and "gone" not in missing.text


def test_markdown_and_title_stay_within_their_limits():
    long = "d" * 900
    files = [pull_file(f"infra/{long}{index}.py", added(f"t = '{github_token()}'"), additions=5000)
             for index in range(400)]
    files.append(pull_file("package.json", hunk('   "dependencies": {',
                                               *(f'+    "{long}{i}": "^1.0.{i}",' for i in range(400)))))
    report = assess(facts(*files), CONFIG)
    assert len(report.protected) == len(report.secrets) == len(report.dependencies) == MAX_LISTED
    markdown = report_markdown(report)
    assert len(markdown) <= MAX_SUMMARY_CHARS
    assert markdown.endswith("… (cut to fit the check run summary)\n")
    assert "Rotate it" in markdown  # what to do comes first, so it survives the cut
    assert len(report_title(report)) <= MAX_TITLE_CHARS


def test_dependency_change_is_plain_data():
    change = DependencyChange("requirements.txt", "a", "1", "2", "upgraded")
    assert change == dependency_changes("requirements.txt", hunk("-a==1", "+a==2"))[0]
