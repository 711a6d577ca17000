"""indicator_enrichment through the REST API, against a fake reputation service on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from phantom_spire.api import create_app
from phantom_spire.runtime import Runtime
from tests.conftest import SAMPLE_FEEDS, make_test_settings, wait_final
from tests.unit.enrichment.fakeserver import FakeReputationService, Scripted, serve

API_KEY = "e2e-provider-key-5f0c9a1b7d2e4c68"
C2 = "198.51.100.23"  # in sample_iocs.csv, known to both fake services


@pytest.fixture
def service() -> Iterator[tuple[FakeReputationService, str]]:
    service = FakeReputationService(api_key=API_KEY)
    service.vt[C2] = {"last_analysis_stats": {"malicious": 40, "harmless": 30, "undetected": 10}}
    service.abuse[C2] = {"abuseConfidenceScore": 100, "totalReports": 90}
    service.scripted["192.0.2.66"] = Scripted(429, {"Retry-After": "600"})
    service.scripted["192.0.2.50"] = Scripted(500)
    with serve(service) as url:
        yield service, url


@pytest.fixture
def enrich_client(
    store_url: str, service: tuple[FakeReputationService, str]
) -> Iterator[TestClient]:
    """Like the shared ``client`` fixture, with both HTTP providers pointed at the fake."""
    url = service[1]
    providers = [
        {"name": "vt", "kind": "virustotal", "url": url, "apiKey": API_KEY, "rateLimit": "4/s"},
        {"name": "abuse", "kind": "abuseipdb", "url": url, "apiKey": API_KEY},
    ]
    settings = make_test_settings(store_url, enrichment_providers=providers)
    runtime = Runtime(settings, run_migrations=False)
    _key_id, key = runtime.identity.bootstrap_admin()
    with TestClient(create_app(runtime), headers={"X-API-Key": key}) as client:
        yield client
    runtime.close()


def run_task(client: TestClient, type_: str, parameters: dict[str, Any]) -> dict[str, Any]:
    body = {"name": type_, "type": type_, "definition": {"parameters": parameters}}
    created = client.post("/api/v1/tasks?execute=true", json=body)
    assert created.status_code == 201, created.text
    return wait_final(client, created.json()["id"])


def test_enrichment_through_the_api(
    enrich_client: TestClient, service: tuple[FakeReputationService, str]
) -> None:
    fake, _url = service
    ingested = run_task(
        enrich_client, "data_ingestion", {"source": str(SAMPLE_FEEDS / "sample_iocs.csv")}
    )
    assert ingested["status"] == "completed", ingested

    iocs = [
        C2,
        "198.51.100[.]23",
        "192.0.2.66",
        "192.0.2.50",
        "malicious-example[.]org",
        "999.1.1.1",
    ]
    task = run_task(enrich_client, "indicator_enrichment", {"iocs": iocs, "timeoutSeconds": 5})
    assert task["status"] == "completed", task
    result = task["result"]
    assert result["providers"] == ["store", "vt", "abuse"]
    assert (result["total"], result["enriched"], result["rejected"]) == (6, 4, 1)
    by_input = {r["input"]: r for r in result["results"]}

    c2 = by_input[C2]
    assert c2["valid"] and c2["type"] == "ipv4" and c2["verdict"] == "malicious"
    assert {n: p["status"] for n, p in c2["providers"].items()} == {
        "store": "ok",
        "vt": "ok",
        "abuse": "ok",
    }
    assert c2["providers"]["store"]["raw"]["sources"] == ["sample_iocs.csv"]
    assert c2["providers"]["abuse"]["score"] == 100.0
    assert by_input["198.51.100[.]23"]["value"] == C2  # defanged input, same value
    assert fake.calls(C2) == 2  # once per HTTP provider, though asked twice

    assert by_input["192.0.2.66"]["providers"]["vt"]["status"] == "rate_limited"
    assert by_input["192.0.2.50"]["providers"]["abuse"]["status"] == "error"
    assert by_input["malicious-example[.]org"]["providers"]["abuse"]["status"] == "unsupported"
    assert by_input["999.1.1.1"]["valid"] is False

    logs = enrich_client.get(f"/api/v1/tasks/{task['id']}/logs").json()
    everything = json.dumps(task) + json.dumps(logs)
    assert API_KEY not in everything
    # The key went to the fake service in headers only.
    assert {h.get("x-apikey") or h.get("key") for _, h in fake.requests} == {API_KEY}


def test_enrich_a_stored_source_with_chosen_providers(enrich_client: TestClient) -> None:
    run_task(enrich_client, "data_ingestion", {"source": str(SAMPLE_FEEDS / "sample_iocs.csv")})
    task = run_task(
        enrich_client,
        "indicator_enrichment",
        {"source": "sample_iocs.csv", "type": "ipv4", "providers": ["store"]},
    )
    assert task["status"] == "completed", task
    result = task["result"]
    assert result["enriched"] >= 1 and result["providers"] == ["store"]
    assert result["providerStatus"]["store"] == {"ok": result["enriched"]}
    assert all(r["type"] == "ipv4" for r in result["results"])


def test_unknown_provider_fails_without_retry(enrich_client: TestClient) -> None:
    task = run_task(enrich_client, "indicator_enrichment", {"iocs": [C2], "providers": ["nope"]})
    assert task["status"] in ("failed", "dead_lettered")
    history = enrich_client.get(f"/api/v1/tasks/{task['id']}/history").json()
    assert len(history) == 1
    assert "unknown enrichment provider 'nope'" in history[0]["error"]


def test_bad_parameters_are_refused_at_creation(enrich_client: TestClient) -> None:
    body = {"name": "x", "type": "indicator_enrichment", "definition": {"parameters": {}}}
    response = enrich_client.post("/api/v1/tasks", json=body)
    assert response.status_code == 422
    assert "either 'iocs' or 'source'" in response.text
