"""The scheduler cases of the shared bug list, read from ../shared at test time."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from phantom_spire.scheduling import CronSchedule

REPO_ROOT = Path(__file__).resolve().parents[3]
CASES_FILE = REPO_ROOT / ".." / "shared" / "cases" / "bugs" / "cases.json"


@dataclass(frozen=True)
class Check:
    """One expectation taken from a case: these fire times, in order, after this instant."""

    cron: str
    timezone: str
    after: str
    expected: list[str]
    must_not_contain: list[str]


def require_cases_file() -> Path:
    """Skip when the shared folder is absent on a laptop; fail in CI, where it must be there."""
    assert (REPO_ROOT / "pyproject.toml").is_file(), f"{REPO_ROOT} is not the repository root"
    if not CASES_FILE.is_file():
        reason = f"shared bug cases not found at {CASES_FILE.resolve()}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must provide ../shared beside the repository")
        pytest.skip(reason)
    return CASES_FILE


def scheduler_cases() -> list[dict[str, Any]]:
    cases = json.loads(require_cases_file().read_text(encoding="utf-8"))
    return [case for case in cases if case.get("component") == "scheduler"]


def case_ids() -> list[str]:
    # Collection must not fail without the file: the test itself then skips or fails.
    if not CASES_FILE.is_file():
        return ["cases.json missing"]
    return [case["id"] for case in json.loads(CASES_FILE.read_text(encoding="utf-8"))
            if case.get("component") == "scheduler"]  # fmt: skip


def checks_of(case: dict[str, Any]) -> list[Check]:
    """Turn the case's input/expected shapes into checks; an unknown shape fails loudly."""
    given, expected = case["input"], case["expected"]
    if "next_fire_times" in expected:
        return [
            Check(given["cron"], given["timezone"], given["after"], expected["next_fire_times"],
                  expected.get("must_not_contain", []))
        ]  # fmt: skip
    if "next" in expected:
        return [
            Check(given["cron"], given["timezone"], sub["after"], [want], [])
            for sub, want in zip(given["cases"], expected["next"], strict=True)
        ]
    if "cases" in given and all(sub["cron"] in expected for sub in given["cases"]):
        return [
            Check(sub["cron"], sub["timezone"], sub["after"], expected[sub["cron"]], [])
            for sub in given["cases"]
        ]
    pytest.fail(f"case {case['id']!r} has a shape this test does not know: {sorted(expected)}")


def test_shared_bug_list_has_scheduler_cases() -> None:
    assert len(scheduler_cases()) >= 1


@pytest.mark.parametrize("case_id", case_ids())
def test_scheduler_bug_case_fires_at_the_expected_times(case_id: str) -> None:
    case = next(case for case in scheduler_cases() if case["id"] == case_id)

    for check in checks_of(case):
        schedule = CronSchedule.parse(check.cron, check.timezone)
        got = schedule.next_n(datetime.fromisoformat(check.after), len(check.expected))

        assert got == [datetime.fromisoformat(text) for text in check.expected], case["summary"]
        forbidden = {datetime.fromisoformat(text) for text in check.must_not_contain}
        assert not forbidden & set(got), case["summary"]


def test_bug_case_sch_01_local_and_utc_expectations_agree() -> None:
    # The case gives the same fire times twice, as local and as UTC text: both must match,
    # offsets included, so the local rendering of our UTC results is checked too.
    case = next((c for c in scheduler_cases() if c["id"] == "BUG-SCH-01"), None)
    if case is None:
        pytest.skip("BUG-SCH-01 is no longer in the shared bug list")
    given, expected = case["input"], case["expected"]
    schedule = CronSchedule.parse(given["cron"], given["timezone"])

    got = schedule.next_n(datetime.fromisoformat(given["after"]), given["count"])

    assert [t.astimezone(schedule.zone).isoformat() for t in got] == expected["next_fire_times"]
    assert [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in got] == expected["next_fire_times_utc"]
