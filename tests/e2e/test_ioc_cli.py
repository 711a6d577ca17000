"""`spire ioc extract|fang|classify`, run as a real process, with and without --jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import shared_path

SPIRE = str(Path(sys.executable).with_name("spire"))


def spire(*args: str, stdin: str | bytes = "") -> subprocess.CompletedProcess[str]:
    data = stdin.encode("utf-8") if isinstance(stdin, str) else stdin
    done = subprocess.run(
        [SPIRE, "ioc", *args], input=data, capture_output=True, timeout=60, check=False
    )
    return subprocess.CompletedProcess(
        done.args, done.returncode, done.stdout.decode("utf-8"), done.stderr.decode("utf-8")
    )


def jsonl(*rows: object) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


def answers(stdout: str) -> dict[object, dict]:
    return {row["id"]: row for row in map(json.loads, stdout.splitlines())}


@pytest.mark.parametrize("command", [[], ["extract"], ["fang"], ["classify"]])
def test_every_ioc_command_has_help(command: list[str]) -> None:
    result = spire(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_extract_jsonl_round_trip_answers_every_request_by_id() -> None:
    requests = jsonl(
        {"id": "a", "text": "C2 at hxxp://evil[.]example-c2.com/gate.php and 203.0.113[.]5"},
        {"id": 7, "text": "nothing to see here"},
    )
    result = spire("extract", "--jsonl", stdin=requests)

    assert result.returncode == 0, result.stderr
    got = answers(result.stdout)
    assert got["a"]["found"]["url"] == ["http://evil.example-c2.com/gate.php"]
    assert got["a"]["found"]["ipv4"] == ["203.0.113.5"]
    assert got[7]["found"] == {}
    assert "sha256" in got[7]["types"]


def test_fang_jsonl_round_trip() -> None:
    result = spire("fang", "--jsonl", stdin=jsonl({"id": 1, "defanged": "hxxps://a[.]b[.]com"}))
    assert answers(result.stdout) == {1: {"id": 1, "fanged": "https://a.b.com"}}


def test_classify_jsonl_round_trip_with_a_valid_and_an_invalid_value() -> None:
    requests = jsonl({"id": 1, "value": "EXAMPLE-Bad[.]com"}, {"id": 2, "value": "999.1.1.1"})
    got = answers(spire("classify", "--jsonl", stdin=requests).stdout)

    assert got[1] == {"id": 1, "type": "domain", "normalized": "example-bad.com"}
    assert got[2] == {"id": 2, "type": None, "normalized": None}


def test_jsonl_bad_lines_get_an_error_answer_and_the_rest_go_on() -> None:
    requests = "not json\n" + jsonl([1, 2], {"id": 3}, {"id": 4, "value": "1.2.3.4"})
    result = spire("classify", "--jsonl", stdin=requests)

    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0
    assert len(lines) == 4
    assert lines[0]["error"].startswith("invalid JSON")
    assert lines[1]["error"] == "expected a JSON object"
    assert "expected a string 'value'" in lines[2]["error"]
    assert lines[3]["type"] == "ipv4"


def test_jsonl_survives_invalid_utf8_input() -> None:
    requests = (
        b'{"id": 1, "text": "caf\xe9 at 198.51.100.4"}\n' + jsonl({"id": 2, "text": ""}).encode()
    )
    result = spire("extract", "--jsonl", stdin=requests)

    assert result.returncode == 0, result.stderr
    got = answers(result.stdout)
    # The bad byte becomes U+FFFD: that request is still answered, and so is the next one.
    assert got[1]["found"]["ipv4"] == ["198.51.100.4"]
    assert got[2]["found"] == {}


def test_classify_without_jsonl_prints_types_and_fails_on_an_invalid_value() -> None:
    result = spire("classify", "--json", "evil[.]com", "999.1.1.1")

    rows = json.loads(result.stdout)
    assert result.returncode == 1
    assert rows[0]["type"] == "domain" and rows[0]["normalized"] == "evil.com"
    assert rows[1]["type"] is None and rows[1]["error"]


def test_extract_reads_a_file_or_stdin(tmp_path: Path) -> None:
    report = tmp_path / "report.txt"
    report.write_text("Payload 44d88612fea8a8f36de82e1278abb02f from evil[.]com", "utf-8")

    from_file = json.loads(spire("extract", str(report), "--json").stdout)
    from_stdin = json.loads(spire("extract", "--json", stdin=report.read_text("utf-8")).stdout)

    assert from_file == from_stdin
    assert {(i["type"], i["value"]) for i in from_file} == {
        ("md5", "44d88612fea8a8f36de82e1278abb02f"),
        ("domain", "evil.com"),
    }


def test_extract_of_a_missing_file_names_it() -> None:
    result = spire("extract", "/no/such/report.txt")
    assert result.returncode != 0
    assert "/no/such/report.txt" in result.stderr


def test_fang_prints_one_value_per_line() -> None:
    result = spire("fang", "hxxp://x[.]y", "a[at]b[.]c")
    assert result.stdout.splitlines() == ["http://x.y", "a@b.c"]


def test_shared_peer_bench_scores_the_product_at_97_percent_or_better(tmp_path: Path) -> None:
    bench = shared_path("bench", "ioc_peers.py")
    cases = shared_path("cases", "ioc")
    summary = tmp_path / "summary.json"
    command = [
        sys.executable, str(bench), str(cases), "--peers", "",
        "--extractor", f"ours={SPIRE} ioc extract --jsonl",
        "--classifier", f"ours={SPIRE} ioc classify --jsonl",
        "--fanger", f"ours={SPIRE} ioc fang --jsonl",
        "--json", str(summary),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr

    scores = json.loads(summary.read_text("utf-8"))
    for kind in ("extract", "classify", "fang"):
        result = scores[kind]["ours"]
        assert result["cases"] > 0, kind
        assert result["pass"] / result["cases"] >= 0.97, (kind, result)
