"""Reading a test server's Prometheus metrics (GET /metrics, allowed to loopback clients)."""

from __future__ import annotations

from typing import Any

import requests
from conftest import Server
from prometheus_client.parser import text_string_to_metric_families


def scrape(server: Server) -> dict[str, list[Any]]:
    """Every sample of /metrics by sample name (a fresh connection: any worker answers)."""
    response = requests.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def value(samples: dict[str, list[Any]], name: str, **labels: str) -> float:
    """The value of the sample with exactly these labels (0 when absent)."""
    found = [s.value for s in samples.get(name, []) if s.labels == labels]
    assert len(found) <= 1
    return float(found[0]) if found else 0.0
