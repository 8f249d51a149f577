"""CRM delivery under chaos: deliveries/s against the configured rate, and handoff→ack latency.

Real parts on loopback: the dev broker (in this process), ``esg-leads fake-crm`` answering
10 % of requests with a 500 (seeded), and ``esg-leads crm-sync`` limited to
``--rate`` requests a second. Two phases:

* **throughput**: ``--backlog`` handoffs waiting on the topic; crm-sync drains them
  (``--until-end``). Requests per second over the drain against the limit (the target:
  within 5 %), and deliveries per second (requests less the 5xx that are retried).
* **latency**: handoffs published at ``--pace`` a second (below the rate) for
  ``--seconds``; for each, the time from its publication to the CRM's 2xx answer.
  Both times are ``time.monotonic()``, one clock for every process on a Linux host.

Prints figures; asserts nothing about time (the machine is shared and noisy).

    python bench/crm_chaos.py [--rate 50] [--backlog 1000] [--pace 40] [--seconds 15]
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from confluent_kafka import Producer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from esg_leads.connectors.dev_broker import DevBroker  # noqa: E402
from tests.crm_helpers import handoff, write_config  # noqa: E402

ESG_LEADS = str(Path(sys.executable).parent / "esg-leads")
TOPICS = ["crm.handoff", "leads.dlq", "ops.alerts"]


def fake_crm(log: Path, chaos: str, seed: int) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen([ESG_LEADS, "fake-crm", "--port", "0", "--chaos", chaos,
                                "--seed", str(seed)], stdout=subprocess.PIPE,
                               stderr=log.open("w"), text=True, start_new_session=True)
    line = process.stdout.readline()
    if not line.startswith("fake CRM on "):
        raise SystemExit(f"fake-crm did not start: {line!r}")
    return process, line.split()[3]


def crm_log(url: str) -> dict:
    return httpx.get(f"{url}/_admin/log", timeout=10).json()


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def phase(work: Path, name: str, rate: float, chaos: str, seed: int, run) -> dict:  # noqa: ANN001
    with DevBroker(topics=TOPICS, partitions=3) as broker:
        crm, url = fake_crm(work / f"{name}-crm.log", chaos, seed)
        config = write_config(work / f"{name}.toml", broker.bootstrap, url,
                              rate_limit_per_second=rate, max_in_flight=4, timeout=2.0,
                              backoff_base=0.05, backoff_max=1.0, failures=10, cooldown=1.0)
        try:
            return run(broker.bootstrap, url, config)
        finally:
            stop(crm)


def throughput(work: Path, args: argparse.Namespace) -> dict:
    def run(bootstrap: str, url: str, config: Path) -> dict:
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
        for i in range(args.backlog):
            investor = f"inv-{i}"
            producer.produce("crm.handoff", key=f"acme-capital/{investor}".encode(),
                             value=orjson.dumps(handoff(investor, 0)))
        producer.flush(30)
        sync = subprocess.run([ESG_LEADS, "crm-sync", "--config", str(config), "--until-end"],
                              capture_output=True, text=True, timeout=args.backlog / args.rate * 5 + 60)
        if sync.returncode != 0:
            raise SystemExit(f"crm-sync failed: {sync.stdout[-500:]}{sync.stderr[-500:]}")
        requests = crm_log(url)["requests"]
        done = sorted(r["t_done"] for r in requests if 200 <= r["status"] < 300)
        span = max(r["t_done"] for r in requests) - min(r["t"] for r in requests)
        return {"delivered": len(done), "requests": len(requests),
                "errors": sum(r["status"] >= 500 for r in requests),
                "per_second": len(done) / span, "requests_per_second": len(requests) / span}

    return phase(work, "throughput", args.rate, "500@p0.1", args.seed, run)


def latency(work: Path, args: argparse.Namespace) -> dict:
    def run(bootstrap: str, url: str, config: Path) -> dict:
        sync = subprocess.Popen([ESG_LEADS, "crm-sync", "--config", str(config)],
                                stdout=(work / "latency-sync.log").open("w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                             "linger.ms": 0})
        published: dict[str, float] = {}
        try:
            # Warm-up: the consumer group's first join takes seconds on the dev broker;
            # handoffs published before it would measure that, not delivery.
            producer.produce("crm.handoff", key=b"acme-capital/warm-up",
                             value=orjson.dumps(handoff("warm-up", 0)))
            producer.flush(30)
            deadline = time.monotonic() + 60
            while not any(r["lead"] == "acme-capital/warm-up" and 200 <= r["status"] < 300
                          for r in crm_log(url)["requests"]):
                if time.monotonic() > deadline:
                    raise SystemExit("crm-sync delivered nothing within 60 s")
                time.sleep(0.1)
            count = int(args.pace * args.seconds)
            start = time.monotonic()
            for i in range(count):
                due = start + i / args.pace
                time.sleep(max(0.0, due - time.monotonic()))
                record = handoff(f"inv-{i}", 0)
                published[record["idempotency_key"]] = time.monotonic()
                producer.produce("crm.handoff", key=f"acme-capital/inv-{i}".encode(),
                                 value=orjson.dumps(record))
                producer.poll(0)
            producer.flush(30)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                acked = {r["key"]: r["t_done"] for r in crm_log(url)["requests"]
                         if 200 <= r["status"] < 300 and r["key"] in published}
                if len(acked) >= count:
                    break
                time.sleep(0.5)
        finally:
            stop(sync)
        lags = [acked[k] - t for k, t in published.items() if k in acked]
        return {"published": len(published), "acked": len(lags),
                "p50": statistics.median(lags), "p99": percentile(lags, 0.99), "max": max(lags)}

    return phase(work, "latency", args.rate, "500@p0.1", args.seed + 1, run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=50, help="crm.rate_limit_per_second")
    parser.add_argument("--backlog", type=int, default=1000, help="handoffs for the throughput phase")
    parser.add_argument("--pace", type=float, default=40, help="handoffs/s in the latency phase")
    parser.add_argument("--seconds", type=float, default=15, help="length of the latency phase")
    parser.add_argument("--seed", type=int, default=7, help="the fake CRM's chaos seed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t = throughput(work, args)
        print(f"throughput: {t['delivered']} handoffs delivered in {t['requests']} requests "
              f"({t['errors']} answered 500) at a limit of {args.rate:g} requests/s: "
              f"{t['requests_per_second']:.1f} requests/s = "
              f"{t['requests_per_second'] / args.rate:.3f} of the limit; "
              f"{t['per_second']:.1f} deliveries/s (the retried 5xx take the rest)")
        lat = latency(work, args)
        print(f"latency at {args.pace:g}/s for {args.seconds:g} s, 10 % 5xx: "
              f"{lat['acked']}/{lat['published']} acknowledged; handoff -> ack "
              f"p50 {lat['p50'] * 1000:.0f} ms, p99 {lat['p99'] * 1000:.0f} ms, "
              f"max {lat['max'] * 1000:.0f} ms")


if __name__ == "__main__":
    main()
