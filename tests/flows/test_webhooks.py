"""``esg-leads webhooks`` as a process, over loopback HTTP, with the dev broker."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import orjson
import pytest

from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.operators.webhook_auth import sign
from esg_leads.schemas.topics import ALL_TOPICS
from tests import zygote
from tests.crm_helpers import SECRET
from tests.kafka_helpers import ESG_LEADS, consume_all, refused_address, stop

pytestmark = pytest.mark.timeout(120)
OUTCOMES = "/webhooks/crm-outcomes"


def _config(path: Path, bootstrap: str, rate: float = 1000) -> Path:
    path.write_text(f'[kafka]\nbootstrap_servers = "{bootstrap}"\n'
                    f'[webhooks]\nrate_limit_per_second = {rate}\nproduce_timeout = 1.5\n'
                    f'[tenants.acme-capital]\nwebhook_secret = "{SECRET}"\n'
                    f'[tenants.borealis-re]\nwebhook_secret = "{"b" * 40}"\n')
    return path


def _start(config: Path, log: Path) -> tuple[zygote.Child, str]:
    process = zygote.popen([ESG_LEADS, "webhooks", "--config", str(config), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=log.open("w"), text=True,
                               start_new_session=True)
    line = process.stdout.readline()
    assert line.startswith("webhooks on "), log.read_text()
    return process, line.split()[2]


def _outcome(event_id: str = "o-1", tenant: str = "acme-capital") -> bytes:
    return orjson.dumps({"tenant": tenant, "event_id": event_id,
                         "event_time": "2026-03-01T09:00:00Z", "source": "crm",
                         "investor_id": "inv-1", "kind": "qualified"})


def _post(client: httpx.Client, url: str, body: bytes, *, tenant: str = "acme-capital",
          secret: str = SECRET, at: int | None = None, path: str = OUTCOMES) -> httpx.Response:
    at = int(time.time()) if at is None else at
    return client.post(url + path, content=body, headers={
        "X-Tenant": tenant, "X-Timestamp": str(at),
        "X-Signature": sign(secret.encode(), at, body), "Content-Type": "application/json"})


def test_each_status_path(tmp_path: Path) -> None:
    with DevBroker(brokers=1, topics=list(ALL_TOPICS), partitions=3) as broker:
        process, url = _start(_config(tmp_path / "w.toml", broker.bootstrap), tmp_path / "w.log")
        try:
            with httpx.Client(timeout=10) as client:
                assert client.get(url + "/healthz").status_code == 200
                ok = _post(client, url, _outcome())
                assert ok.status_code == 202, ok.text
                forged = _post(client, url, _outcome("o-2"), secret="x" * 40)
                assert forged.status_code == 401
                replayed = _post(client, url, _outcome("o-3"), at=int(time.time()) - 3600)
                assert (replayed.status_code, replayed.json()["error"]) == (401, "stale timestamp")
                cross = _post(client, url, _outcome("o-4", tenant="borealis-re"))
                assert cross.status_code == 401  # acme's secret vouching for borealis
                invalid = _post(client, url, b'{"tenant": "acme-capital"}')
                assert invalid.status_code == 422 and "event_id" in invalid.json()["detail"]
                huge = _post(client, url, b"[" + b"1," * (600 * 1024) + b"1]")
                assert huge.status_code == 413
                metrics = client.get(url + "/metrics").text
            assert 'route="/webhooks/crm-outcomes",status="202"' in metrics
        finally:
            assert stop(process) == 0
        accepted = consume_all(broker.bootstrap, "crm.outcomes")
        assert [orjson.loads(m.value())["event_id"] for m in accepted] == ["o-1"]
        assert accepted[0].key() == b"inv-1"


def test_broker_down_is_503_and_the_rate_limit_429(tmp_path: Path) -> None:
    with refused_address() as dead:
        process, url = _start(_config(tmp_path / "w.toml", dead, rate=0.01), tmp_path / "w.log")
        try:
            with httpx.Client(timeout=10) as client:
                down = _post(client, url, _outcome())
                assert down.status_code == 503 and int(down.headers["retry-after"]) > 0
                limited = _post(client, url, _outcome("o-2"))
                assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
        finally:
            assert stop(process) == 0
