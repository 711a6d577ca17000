"""Schema-driven fuzzing of the REST API (issue 5), in-process, on SQLite and PostgreSQL.

* ``test_operation_conforms_to_schema``: schemathesis generates requests for every operation in
  the app's own OpenAPI document and sends them with the admin key. Every response is checked
  with ``not_a_server_error``, ``status_code_conformance``, ``content_type_conformance`` and
  ``response_schema_conformance``. Path ids are sometimes those of seeded objects (tasks in
  several states, a workflow waiting for approval, a spare API key), so that answers other than
  404 are checked too.
* ``test_filter_and_search_parameters_never_500``: quotes, operators, NUL, unicode and strings of
  up to 10,000 characters in every text query parameter of the task listing, the task search,
  the indicator listing and the audit listing (each alone, then mixed by hypothesis): no 5xx.
* ``test_integer_query_parameters_past_64_bits_never_500``: every integer query parameter without
  a documented maximum, one past the 64-bit range: no 5xx.

All of it is deterministic (derandomized hypothesis, no example database) and bounded; the
worker pool does not run, so no task is executed and no feed fetched.

Known bugs are listed below (``KNOWN_BUGS``, ``FILTER_BUGS``, ``INTEGER_BUGS``): the test is
marked ``xfail(strict=True)`` for the backends concerned and still fails outright when a failure
the entry does not explain shows up, or when the bug no longer reproduces (then remove the entry).
"""

from __future__ import annotations

import dataclasses
import socket
import tempfile
import traceback
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from schemathesis.errors import FailureGroup
from schemathesis.python import asgi as schemathesis_asgi

from phantom_spire.api import create_app
from phantom_spire.runtime import Runtime
from phantom_spire.store import migrate
from tests.conftest import make_test_settings

OPENAPI_PATH = "/api-docs/openapi.json"
SEARCH_PATH = "/api/v1/tasks/search"
MAX_EXAMPLES = 20

CHECKS = {
    "not_a_server_error": schemathesis.checks.not_a_server_error,
    "status_code_conformance": schemathesis.checks.status_code_conformance,
    "content_type_conformance": schemathesis.checks.content_type_conformance,
    "response_schema_conformance": schemathesis.checks.response_schema_conformance,
}

BACKENDS = ("sqlite", "postgresql")


@dataclasses.dataclass(frozen=True)
class Bug:
    """A known bug: why, which failure kinds it explains, on which backends it shows."""

    reason: str
    kinds: frozenset[str]
    backends: tuple[str, ...] = BACKENDS


def bug(reason: str, *kinds: str, backends: tuple[str, ...] = BACKENDS) -> Bug:
    return Bug(reason, frozenset(kinds), backends)


class KnownBug(AssertionError):
    """Raised when the failures seen are exactly those explained by known bugs."""


# What this file found when it was written; each FUZZ-n is one bug, named in the xfail reasons.
FUZZ_1 = (
    "FUZZ-1: POST /admin/keys for a userId with no user raises ValueError('no user ...; create "
    "the user first') in IdentityService.issue_key: 500 instead of a 404/422 problem"
)
FUZZ_2 = (
    "FUZZ-2: revoke/rotate of an unknown key id raise ApiKeyRejected('no such key') from "
    "IdentityService._record: 500 instead of 404"
)
FUZZ_3 = (
    "FUZZ-3: rotating a key that is already rotated or revoked raises ApiKeyError('cannot "
    "rotate API key ...'): 500 instead of 409"
)
FUZZ_4 = (
    "FUZZ-4: on PostgreSQL a NUL character in a text filter (or body field) reaches the "
    "database: psycopg DataError 'PostgreSQL text fields cannot contain NUL (0x00) bytes', 500"
)
FUZZ_5 = (
    "FUZZ-5: integer query parameters without a maximum (after, offset) overflow the database "
    "integer at 2**63: OverflowError on SQLite, NumericValueOutOfRange on PostgreSQL, 500"
)
FUZZ_6 = "FUZZ-6: the OpenAPI document does not list error statuses the route answers"
FUZZ_7 = (
    "FUZZ-7: error answers are application/problem+json, the OpenAPI document declares 422 as "
    "application/json with FastAPI's HTTPValidationError schema"
)


def _undocumented(*statuses: int, problem_json: bool = False) -> dict[str, Bug]:
    bugs = {}
    if statuses:
        kinds = (f"undocumented {status}" for status in statuses)
        bugs["status_code_conformance"] = bug(FUZZ_6, *kinds)
    if problem_json:
        bugs["content_type_conformance"] = bug(FUZZ_7, "422 application/problem+json")
    return bugs


# (METHOD, path) -> {check: Bug}. Kinds: the exception class the app raised (a 500) for
# not_a_server_error, "undocumented <status>" for status_code_conformance, "<status> <media
# type>" for content_type_conformance, "<status> schema" for response_schema_conformance.
KNOWN_BUGS: dict[tuple[str, str], dict[str, Bug]] = {}
# FUZZ-1 to FUZZ-7 were fixed: unknown users and keys are 422/404, key state conflicts 409, a
# NUL anywhere in a request is refused with 422 before it reaches the store, integer query
# parameters are bounded, and every router documents its problem+json error answers.

# GET path -> Bug, for test_filter_and_search_parameters_never_500. Kinds: "NUL" when a value
# of the failing request holds a NUL character, "other" otherwise.
FILTER_BUGS: dict[str, Bug] = {}

# GET path -> Bug, for test_integer_query_parameters_past_64_bits_never_500. Kind: "500".
INTEGER_BUGS: dict[str, Bug] = {}


def _known(bugs: dict[str, Bug], backend: str) -> dict[str, Bug]:
    return {name: b for name, b in bugs.items() if backend in b.backends}


def _xfail(bugs: dict[str, Bug]) -> list[Any]:
    if not bugs:
        return []
    reason = "; ".join(f"{name}: {b.reason}" for name, b in sorted(bugs.items()))
    return [pytest.mark.xfail(strict=True, raises=KnownBug, reason=reason)]


def _settle(label: str, failures: dict[str, set[str]], known: dict[str, Bug], report: str) -> None:
    """Fail on what no known bug explains, or on a known bug that is gone; else raise KnownBug.

    ``failures`` maps each failing check (or test) name to the kinds of failure seen.
    """
    unexplained = {
        name: sorted(kinds - known[name].kinds if name in known else kinds)
        for name, kinds in failures.items()
    }
    unexplained = {name: kinds for name, kinds in unexplained.items() if kinds}
    assert not unexplained, f"{label}: new failures {unexplained}\n{report}"
    gone = sorted(set(known) - set(failures))
    assert not gone, f"{label}: {gone} no longer fail; remove their KNOWN_BUGS entries\n{report}"
    if known:
        raise KnownBug(f"{label}: known bugs still there\n{report}")


# -- the operations, read from the app's own OpenAPI document at collection time ----------------


def _openapi_document() -> dict[str, Any]:
    """The OpenAPI document of an app built on a throwaway SQLite store."""
    with tempfile.TemporaryDirectory(prefix="spire-openapi-") as folder:
        url = f"sqlite:///{Path(folder) / 'openapi.db'}"
        migrate(url)
        runtime = Runtime(make_test_settings(url), run_migrations=False)
        try:
            return create_app(runtime, run_worker=False).openapi()
        finally:
            runtime.close()


DOCUMENT = _openapi_document()
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in DOCUMENT["paths"].items()
    for method in item
    if method in {"get", "put", "post", "delete", "patch", "head", "options"}
)


def _conformance_params() -> list[Any]:
    return [
        pytest.param(
            backend,
            method,
            path,
            marks=_xfail(_known(KNOWN_BUGS.get((method, path), {}), backend)),
            id=f"{backend}-{method} {path}",
        )
        for backend in BACKENDS
        for method, path in OPERATIONS
    ]


# -- the app under test: built like the `client` fixture of tests/conftest.py -----------------


def _only_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any Python-level connection to a non-loopback address during the fuzz run.

    Nothing here should reach the network (the worker does not run, so no feed is fetched);
    this makes sure of it.
    """
    original = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host not in ("127.0.0.1", "::1", "localhost"):
                raise AssertionError(f"the fuzz run tried to connect to {address!r}")
        return original(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@dataclasses.dataclass
class Api:
    """The app on a fresh store, the admin key, and the seeded objects' ids by path parameter."""

    runtime: Runtime
    app: Any
    key: str
    backend: str
    seeds: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def seed(self, wanted: Iterable[str]) -> None:
        """Create the objects whose ids go into the path parameters ``wanted``.

        A task with searchable text always exists, so that listings and searches have a row.
        """
        wanted = set(wanted)
        with TestClient(self.app, headers=self.headers) as client:

            def post(url: str, **kwargs: Any) -> dict[str, Any]:
                response = client.post(url, **kwargs)
                assert response.status_code in (201, 202), f"{url}: {response.text}"
                return dict(response.json())

            def task(name: str, *actions: str) -> str:
                body = {
                    "name": name,
                    "type": "noop",
                    "tags": ["fuzz", "apt-29", 'quote"tag'],
                    "metadata": {"description": f"{name}: a C2 beacon seen at 10.0.0.1"},
                    "definition": {"parameters": {"sleepMs": 0}},
                }
                task_id = str(post("/api/v1/tasks", json=body)["id"])
                for action in actions:
                    post(f"/api/v1/tasks/{task_id}/{action}")
                return task_id

            pending = task("pending beacon task")
            if "task_id" in wanted:
                self.seeds["task_id"] = [
                    pending,
                    task("queued task", "execute"),
                    task("cancelled task", "cancel"),
                    task("paused task", "execute", "pause"),
                ]
            if wanted & {"workflow_id", "step"}:
                parameters = {"incidentId": "IR-1", "severity": "high", "affectedSystems": ["h1"]}
                body = {"template": "INCIDENT_RESPONSE", "parameters": parameters}
                self.seeds["workflow_id"] = [str(post("/api/v1/workflows", json=body)["id"])]
                self.seeds["step"] = ["approve_containment", "triage"]
            if "key_id" in wanted:
                # Never the admin's own key: revoking it would make every later request a 401.
                spare = post("/api/v1/admin/keys", json={"userId": "admin", "label": "spare"})
                self.seeds["key_id"] = [str(spare["keyId"])]


@pytest.fixture
def api(
    store_url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Api]:
    """Built like the ``client`` fixture of tests/conftest.py, without the worker pool."""
    _only_loopback(monkeypatch)
    runtime = Runtime(make_test_settings(store_url), run_migrations=False)
    bootstrapped = runtime.identity.bootstrap_admin()
    assert bootstrapped is not None, "the store was not empty"
    _admin_key_id, key = bootstrapped
    app = create_app(runtime, run_worker=False)
    try:
        yield Api(runtime, app, key, request.node.callspec.params["store_url"])
    finally:
        # schemathesis keeps each app's lifespan open until the process ends; end ours now.
        schemathesis_asgi.shutdown_lifespans()
        runtime.close()


def _path_parameters(path: str) -> list[str]:
    return [name for item in DOCUMENT["paths"][path].values() for name in _names(item, "path")]


def _names(operation: dict[str, Any], location: str) -> list[str]:
    return [p["name"] for p in operation.get("parameters", []) if p["in"] == location]


# -- part 1: schemathesis over every operation ------------------------------------------------


@dataclasses.dataclass
class CheckFailures:
    count: int = 0
    examples: dict[str, str] = dataclasses.field(default_factory=dict)  # kind -> first report

    @property
    def kinds(self) -> set[str]:
        return set(self.examples)


def _record(failures: dict[str, CheckFailures], check: str, kind: str, report: str) -> None:
    entry = failures.setdefault(check, CheckFailures())
    entry.count += 1
    entry.examples.setdefault(kind, report)


def _origin(exc: BaseException) -> str:
    """Where in phantom_spire the exception was raised (its innermost frame in our code)."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "phantom_spire" in f.filename]
    if not frames:
        return "outside phantom_spire"
    frame = frames[-1]
    return f"{frame.filename.rsplit('/src/', 1)[-1]}:{frame.lineno} in {frame.name}"


def _kind(check: str, response: schemathesis.Response) -> str:
    if check == "status_code_conformance":
        return f"undocumented {response.status_code}"
    if check == "content_type_conformance":
        values = [
            v for k, vs in response.headers.items() if k.lower() == "content-type" for v in vs
        ]
        media_type = values[0].split(";")[0] if values else "(none)"
        return f"{response.status_code} {media_type}"
    if check == "response_schema_conformance":
        return f"{response.status_code} schema"
    return f"status {response.status_code}"


def _fuzz_operation(api: Api, method: str, path: str) -> tuple[int, dict[str, CheckFailures]]:
    seeded = _names(DOCUMENT["paths"][path][method.lower()], "path")
    api.seed(seeded)
    schema = schemathesis.openapi.from_asgi(OPENAPI_PATH, api.app)
    operation = schema[path][method]
    strategies = [operation.as_strategy()]
    if seeded:
        # The same operation on real objects, each seeded id in turn (with the other path
        # parameters also seeded). Deterministic: the ids are fixed for this store.
        combos: list[dict[str, str]] = [{}]
        for name in seeded:
            combos = [{**c, name: value} for c in combos for value in api.seeds[name]]
        strategies += [operation.as_strategy(path_parameters=combo) for combo in combos]

    failures: dict[str, CheckFailures] = {}
    sent = 0

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(strategies))
    def run(case: schemathesis.Case) -> None:
        nonlocal sent
        sent += 1
        try:
            response = case.call(headers=api.headers)
        except Exception as exc:  # an unhandled exception in the app, re-raised by Starlette
            report = (
                f"{case.as_curl_command(headers=api.headers)}\n"
                f"-> 500: the app raised {type(exc).__name__}: {exc} ({_origin(exc)})"
            )
            _record(failures, "not_a_server_error", type(exc).__name__, report)
            return
        for name, check in CHECKS.items():
            try:
                case.validate_response(response, checks=[check], headers=api.headers)
            except FailureGroup as exc:
                _record(failures, name, _kind(name, response), str(exc))

    run()
    return sent, failures


@pytest.mark.parametrize(
    ("store_url", "method", "path"), _conformance_params(), indirect=["store_url"]
)
def test_operation_conforms_to_schema(api: Api, method: str, path: str) -> None:
    sent, failures = _fuzz_operation(api, method, path)
    assert sent > 0
    report = "\n\n".join(
        f"== {name}: {f.count} of {sent} requests; the first of each kind:\n"
        + "\n".join(f"-- {kind}:\n{example}" for kind, example in sorted(f.examples.items()))
        for name, f in sorted(failures.items())
    )
    _settle(
        f"{method} {path} on {api.backend}",
        {name: f.kinds for name, f in failures.items()},
        _known(KNOWN_BUGS.get((method, path), {}), api.backend),
        report,
    )


def test_every_operation_is_fuzzed_and_the_security_scheme_is_documented() -> None:
    assert len(OPERATIONS) >= 30
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    stale = sorted(set(KNOWN_BUGS) - set(OPERATIONS))
    stale += sorted({*FILTER_BUGS, *INTEGER_BUGS} - set(DOCUMENT["paths"]))
    assert not stale, f"known bugs name operations the API no longer has: {stale}"


# -- part 2: special characters and long inputs in filters and search -------------------------

# Every one of these goes alone into every text parameter; hypothesis then mixes them.
SWEEP = [
    *"\"'-^():\\/*%_",
    "\x00",
    "'; DROP TABLE tasks; --",
    '"unterminated',
    "NEAR(a b, 2)",
    "a AND (b OR -c)",
    "name:x* ^2",
    "<-> !! @@ :*",
    "\u202e\U0001f600\u0301é中文",
    "a" * 10_000,
    '"' * 10_000,
    "\x00" * 10_000,
]
# For the other parameters (hypothesis sends the rest of SWEEP and TOKENS there too).
SHORT_SWEEP = ["'", '"', "\\", "%", "*", "\x00", "\u202e\U0001f600\u0301é中文", *SWEEP[-3:]]
TOKENS = [
    *SWEEP[:-3],
    *"~ | & ! + { } [ ] ; , . < > = @ # $ ` -- /* */ '' \"\" %00 %25 \\x00 && ||".split(),
    *"NEAR AND OR NOT 1'OR'1'='1 ß İ ǅ עברית \x7f \x1b[31m".split(" "),
    *" \t\n\r\u200b\ufeff\ufffd\ud7ff",
]
text_values = st.one_of(
    st.lists(st.sampled_from(TOKENS) | st.text(min_size=1, max_size=6), max_size=12).map("".join),
    st.text(max_size=200),
    st.builds(
        lambda piece, n: (piece * n)[:n],
        st.sampled_from([*TOKENS, "a", "apt29 "]),
        st.sampled_from((1_000, 4_096, 10_000)),
    ),
)
# httpx refuses a query string over 64 KiB; every value above fits alone, not always together.
MAX_QUERY = 60_000

FUZZED_LISTINGS = ("/api/v1/tasks", SEARCH_PATH, "/api/v1/indicators", "/api/v1/audit")
# Parameters a request needs to get past validation, so that the fuzzed one reaches the store.
BASE_PARAMS = {SEARCH_PATH: {"q": "beacon"}}
# Text searched for words: each special value is also sent next to a word that matches.
WORD_PARAMETERS = {"q"}


def _query_parameters(path: str, wanted: Any) -> list[dict[str, Any]]:
    """The query parameters of GET ``path`` whose schema (or one of its variants) is wanted."""
    found = []
    for parameter in DOCUMENT["paths"][path]["get"].get("parameters", []):
        schema = parameter.get("schema", {})
        if parameter["in"] == "query" and any(wanted(v) for v in schema.get("anyOf", [schema])):
            found.append(parameter)
    return found


def _is_text(schema: dict[str, Any]) -> bool:
    items = schema.get("items", {})
    return schema.get("type") == "string" or (
        schema.get("type") == "array" and items.get("type") == "string"
    )


def _shown(params: dict[str, str]) -> str:
    return repr(
        {k: v if len(v) <= 60 else f"{v[:20]!r}... ({len(v)} chars)" for k, v in params.items()}
    )


def _listing_params() -> list[Any]:
    return [
        pytest.param(
            backend,
            path,
            marks=_xfail(_known({"server errors": FILTER_BUGS[path]}, backend))
            if path in FILTER_BUGS
            else [],
            id=f"{backend}-GET {path}",
        )
        for backend in BACKENDS
        for path in FUZZED_LISTINGS
    ]


@pytest.mark.parametrize(("store_url", "path"), _listing_params(), indirect=["store_url"])
def test_filter_and_search_parameters_never_500(api: Api, path: str) -> None:
    if path not in DOCUMENT["paths"]:
        if path == SEARCH_PATH:
            pytest.skip(f"GET {SEARCH_PATH} is not in the OpenAPI document (not implemented yet)")
        pytest.fail(f"GET {path} is gone from the OpenAPI document")
    names = [p["name"] for p in _query_parameters(path, _is_text)]
    assert names, f"GET {path} has no text query parameter to fuzz"
    if path == SEARCH_PATH:
        assert "q" in names
    api.seed([])
    base = BASE_PARAMS.get(path, {})
    errors: list[str] = []
    kinds: set[str] = set()
    sent = 0

    with TestClient(api.app, headers=api.headers, raise_server_exceptions=False) as client:
        assert client.get(path, params=base).status_code == 200

        def send(fuzzed: dict[str, str]) -> None:
            nonlocal sent
            sent += 1
            params = {**base, **fuzzed}
            response = client.get(path, params=params)
            if response.status_code >= 500:
                kinds.add("NUL" if any("\x00" in v for v in params.values()) else "other")
                errors.append(
                    f"GET {path} {_shown(params)} -> {response.status_code} {response.text}"
                )
            else:
                response.json()

        for name in names:
            for value in SWEEP if name in WORD_PARAMETERS else SHORT_SWEEP:
                send({name: value})
                if name in WORD_PARAMETERS and len(value) < 100:
                    send({name: f"beacon {value}"})
                    send({name: f"{value}beacon{value}"})

        @settings(
            max_examples=40,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(params=st.dictionaries(st.sampled_from(names), text_values, min_size=1, max_size=4))
        def fuzz(params: dict[str, str]) -> None:
            assume(len(urlencode({**base, **params})) <= MAX_QUERY)
            send(params)

        fuzz()

    report = f"{len(errors)} of {sent} requests answered 5xx; the first ones:\n" + "\n".join(
        errors[:8]
    )
    known = {"server errors": FILTER_BUGS[path]} if path in FILTER_BUGS else {}
    _settle(
        f"GET {path} on {api.backend}",
        {"server errors": kinds} if kinds else {},
        _known(known, api.backend),
        report,
    )


# -- part 3: integers past the 64-bit range ---------------------------------------------------

INTEGER_LISTINGS = sorted(
    path
    for path, item in DOCUMENT["paths"].items()
    if "get" in item
    and _query_parameters(path, lambda v: v.get("type") == "integer")
)


def _integer_params() -> list[Any]:
    return [
        pytest.param(
            backend,
            path,
            marks=_xfail(_known({"server errors": INTEGER_BUGS[path]}, backend))
            if path in INTEGER_BUGS
            else [],
            id=f"{backend}-GET {path}",
        )
        for backend in BACKENDS
        for path in INTEGER_LISTINGS
    ]


@pytest.mark.parametrize(("store_url", "path"), _integer_params(), indirect=["store_url"])
def test_integer_query_parameters_past_64_bits_never_500(api: Api, path: str) -> None:
    api.seed(_path_parameters(path))
    url = path.format(**{name: ids[0] for name, ids in api.seeds.items()})
    base = BASE_PARAMS.get(path, {})
    errors = []
    with TestClient(api.app, headers=api.headers, raise_server_exceptions=False) as client:
        # Bounded parameters must refuse these with a 422; unbounded ones must not overflow.
        integers = _query_parameters(path, lambda v: v.get("type") == "integer")
        for parameter in integers:
            variants = parameter["schema"].get("anyOf", [parameter["schema"]])
            values = [2**63, 10**30]
            if all("minimum" not in v for v in variants):
                values.append(-(2**63) - 1)
            for value in values:
                params = {**base, parameter["name"]: value}
                response = client.get(url, params=params)
                if response.status_code >= 500:
                    errors.append(f"GET {url} {params} -> {response.status_code} {response.text}")
    known = {"server errors": INTEGER_BUGS[path]} if path in INTEGER_BUGS else {}
    _settle(
        f"GET {path} on {api.backend}",
        {"server errors": {"500"}} if errors else {},
        _known(known, api.backend),
        "\n".join(errors),
    )
