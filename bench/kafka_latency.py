"""Processing latency and sustained throughput through a Kafka-protocol broker.

    python bench/kafka_latency.py [--rate 5000] [--seconds 30] [--investors 3000]
                                  [--shards N] [--stagger-ms MS] [--no-audit] [--no-pin]
                                  [--dump CSV]

Starts the dev broker (librdkafka's mock cluster) and ``esg-leads run`` as a real
subprocess, then publishes engagements at ``--rate`` events/s with event time =
wall time. Every published lead is matched to the moment its window could first
close — window end + allowed lateness, in event (= wall) time — and

    latency = lead's Kafka timestamp - (window end + allowed lateness)

includes the wait for the tenant's event clock to pass that point: an event time
clock only moves when an event of that tenant arrives. The processing latency is
measured from the input that actually closed the window — the first event of the
lead's tenant at or after window end + lateness, whose produce time the bench knows
— to the lead on the output topic: consume, merge, parse, catalog, window,
investor state, scoring, lifecycle, produce; window wait excluded. Prints
p50/p95/p99 of both, the input rate and the rate the flow processed, and where the
flow's operator time went (per stage, from its own metrics).

On a machine with two cores or more, the bench (load generator, broker, measuring
consumer) is pinned to one core and the flow to the others, as they would run on
different machines in production; ``--no-pin`` lets them share.

On a shared virtual machine the host sometimes runs every core several times slower
for a few to tens of milliseconds. To tell those moments from the flow's own, the
bench runs ``machine_jitter.py`` at idle priority on its own core for the whole run
(it only uses CPU time nobody else wants) and reports the leads whose processing
overlapped a loop run whose CPU time was 3x the median or more, and the percentiles
without them. The headline figures include every lead.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from array import array
from bisect import bisect_left, bisect_right
from datetime import datetime, timezone
from pathlib import Path

import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.schemas.settings import Settings
from esg_leads.schemas.topics import ALL_TOPICS

TENANTS = ("acme-capital", "borealis-re", "cityline-im")
ESG_LEADS = str(Path(sys.executable).parent / "esg-leads")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat()


def metric(port: int, name: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def stage_seconds(port: int) -> dict[str, tuple[float, float]]:
    """Per stage: (seconds spent, batches handled) so far, from the flow's histogram."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, list[float]] = {}
    for line in text.splitlines():
        for suffix, slot in (("_sum", 0), ("_count", 1)):
            prefix = f"esg_leads_stage_batch_seconds{suffix}{{stage=\""
            if line.startswith(prefix):
                stage = line[len(prefix):].split('"', 1)[0]
                out.setdefault(stage, [0.0, 0.0])[slot] = float(line.rsplit(" ", 1)[1])
    return {k: (v[0], v[1]) for k, v in out.items()}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed_world(producer: Producer, investors: int, properties: int) -> None:
    now = time.time()
    for i in range(properties):
        tenant = TENANTS[i % 3]
        producer.produce("esg.property-signals", key=f"p-{i}".encode(), value=orjson.dumps({
            "tenant": tenant, "event_id": f"s-{i}", "event_time": iso(now), "source": "bench",
            "property_id": f"p-{i}", "country": "GB", "asset_class": "office",
            "floor_area_m2": 5000.0, "value_eur": 2e7, "epc_band": "BCD"[i % 3],
            "verification": "third_party", "data_as_of": "2026-01-01"}))
    for i in range(investors):
        producer.produce("investor.profiles", key=f"inv-{i}".encode(), value=orjson.dumps({
            "tenant": TENANTS[i % 3], "event_id": f"pr-{i}", "event_time": iso(now),
            "source": "bench", "investor_id": f"inv-{i}", "investor_type": "asset_manager",
            "subscriber_type": "corporate", "jurisdiction": "GB",
            "consents": [{"channel": "email", "status": "opted_in"}]}))
    producer.flush()


def publish(producer: Producer, rate: float, seconds: float, investors: int, properties: int,
            counter: list[int], produced: dict[str, list[float]]) -> None:
    rng = random.Random(1)
    chunk = max(1, int(rate / 200))  # 5 ms worth of events per send
    started = time.time()
    sent = 0
    while (now := time.time()) - started < seconds:
        due = int((now - started) * rate)
        while sent < due:
            for _ in range(chunk):
                investor = rng.randrange(investors)
                prop = rng.randrange(properties // 3) * 3 + investor % 3
                at = time.time()
                tenant = TENANTS[investor % 3]
                produced.setdefault(tenant, []).append(at)
                producer.produce("investor.engagements", key=f"inv-{investor}".encode(),
                                 value=orjson.dumps({
                                     "tenant": tenant, "event_id": f"e-{sent}",
                                     "event_time": iso(at), "source": "bench",
                                     "investor_id": f"inv-{investor}", "action": "property_view",
                                     "channel": "web", "property_id": f"p-{prop}",
                                     "duration_s": 30.0}))
                sent += 1
            producer.poll(0)
        time.sleep(0.002)
    producer.flush()
    counter[0] = sent


def collect(bootstrap: str, lateness_s: float, stop: threading.Event,
            out: list[tuple[float, str, float]]) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-latency",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.assign([TopicPartition("leads.scored", p, 0) for p in range(3)])
    while not stop.is_set():
        message = consumer.poll(0.2)
        if message is None or message.error() or message.value() is None:
            continue
        lead = orjson.loads(message.value())
        closable = datetime.fromisoformat(lead["event_time"]).timestamp() + lateness_s
        out.append((message.timestamp()[1] / 1000, lead["tenant"], closable))
    consumer.close()


def host_stalls(path: Path, slower: float = 3.0) -> list[tuple[float, float]]:
    """(start, end) wall times of the canary's runs that took ``slower``x its median
    CPU time or more (``machine_jitter.py --record``: wall start, CPU seconds)."""
    if not path.exists():
        return []
    record = array("d", path.read_bytes())
    starts, cpu = record[0::2], record[1::2]
    if not cpu:
        return []
    median = sorted(cpu)[len(cpu) // 2]
    # A run's wall time is at least its CPU time; the next run's start bounds it.
    ends = list(starts[1:]) + [starts[-1] + cpu[-1]]
    return [(start, end) for start, used, end in zip(starts, cpu, ends, strict=True)
            if used >= slower * median]


def overlaps(intervals: list[tuple[float, float]], start: float, end: float) -> bool:
    """Whether [start, end] meets any of ``intervals`` (sorted, not overlapping): only
    the last one starting by ``end`` can, as every earlier one ends before it starts."""
    i = bisect_right(intervals, (end, float("inf")))
    return i > 0 and intervals[i - 1][1] >= start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=5000)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--investors", type=int, default=3000)
    parser.add_argument("--properties", type=int, default=300)
    parser.add_argument("--window-seconds", type=float, default=10)
    parser.add_argument("--lateness-seconds", type=float, default=1)
    parser.add_argument("--stagger-ms", type=float,
                        default=Settings().windows.stagger_step.total_seconds() * 1000,
                        help="windows.stagger_step: a tenant's windows close in groups this far apart")
    parser.add_argument("--shards", type=int, default=Settings().windows.shards_per_tenant,
                        help="windows.shards_per_tenant (default: the shipped default)")
    parser.add_argument("--batch-size", type=int, default=500,
                        help="kafka.batch_size: most messages per source batch")
    parser.add_argument("--no-audit", action="store_true", help="run without the audit trail")
    parser.add_argument("--dump", type=Path, default=None,
                        help="write every lead's emit time and latencies (ms) to this CSV file")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the flow share every core with the load generator and broker")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cores) >= 2
    if pin:
        # The load generator, the broker and the consumer measuring leads would run on
        # other machines; here they get one core and the flow process the others, so
        # the flow's latency is not the scheduler handing its core to the bench.
        os.sched_setaffinity(0, cores[:1])  # threads started from here on inherit it
    tmp = Path(tempfile.mkdtemp(prefix="esg-latency-"))
    config = tmp / "bench.toml"
    config.write_text(
        "".join(f'[tenants."{t}"]\n' for t in TENANTS)
        + f"[windows]\nlength = {args.window_seconds}\nallowed_lateness = {args.lateness_seconds}\n"
        + f"shards_per_tenant = {args.shards}\nstagger_step = {args.stagger_ms / 1000}\n"
        + f"[kafka]\nbatch_size = {args.batch_size}\n"
        + ("[audit]\ndirectory = \"\"\n" if args.no_audit else ""))
    port = 19464
    with DevBroker(brokers=1, topics=list(ALL_TOPICS), partitions=3) as broker:
        run = subprocess.Popen([ESG_LEADS, "run", "--bootstrap", broker.bootstrap, "--config",
                                str(config), "--metrics-port", str(port)], cwd=tmp,
                               stdout=subprocess.DEVNULL, stderr=(tmp / "run.log").open("w"),
                               preexec_fn=(lambda: os.sched_setaffinity(0, cores[1:])) if pin else None)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 2})
        seed_world(producer, args.investors, args.properties)
        time.sleep(3)  # let the flow start and read the seed
        leads: list[tuple[float, str, float]] = []
        produced: dict[str, list[float]] = {}
        stop = threading.Event()
        reader = threading.Thread(target=collect, args=(broker.bootstrap, args.lateness_seconds,
                                                        stop, leads), daemon=True)
        reader.start()
        consumed_before = metric(port, "esg_leads_input_messages_total")
        stages_before = stage_seconds(port)
        counter = [0]
        canary_file = tmp / "canary.bin"
        canary = subprocess.Popen([sys.executable, str(Path(__file__).with_name("machine_jitter.py")),
                                   "--seconds", str(args.seconds + 60), "--idle",
                                   "--record", str(canary_file)]
                                  + (["--cpu", str(cores[0])] if pin else []),
                                  stdout=subprocess.DEVNULL)
        cpu_before = cpu_seconds(run.pid)
        started = time.time()
        publish(producer, args.rate, args.seconds, args.investors, args.properties, counter,
                produced)
        produced_seconds = time.time() - started
        # Wait for the flow to catch up, then let the last windows close.
        deadline = time.time() + 120
        target = consumed_before + counter[0]
        while metric(port, "esg_leads_input_messages_total") < target and time.time() < deadline:
            time.sleep(0.2)
        caught_up_seconds = time.time() - started
        flow_cpu = cpu_seconds(run.pid) - cpu_before
        time.sleep(args.window_seconds + args.lateness_seconds + 2)
        stages = {k: (v[0] - stages_before.get(k, (0, 0))[0], v[1] - stages_before.get(k, (0, 0))[1])
                  for k, v in stage_seconds(port).items()}
        stop.set()
        reader.join(10)
        run.send_signal(signal.SIGTERM)
        canary.send_signal(signal.SIGTERM)
        run.wait(60)
        canary.wait(60)
    if not leads:
        sys.exit(f"no leads came out; see {tmp / 'run.log'}")
    stalls = host_stalls(canary_file)
    processing, with_wait, rows, steady = [], [], [], []
    for emitted, tenant, closable in leads:
        times = produced.get(tenant, [])
        i = bisect_left(times, closable)
        with_wait.append(emitted - closable)
        if i < len(times):  # the input that closed this window: the tenant's clock passed it
            processing.append(emitted - times[i])
            if not overlaps(stalls, times[i], emitted):
                steady.append(emitted - times[i])
        rows.append(f"{emitted - started:.4f},{tenant},{1000 * (emitted - closable):.2f},"
                    + (f"{1000 * (emitted - times[i]):.2f}" if i < len(times) else ""))
    if args.dump is not None:
        args.dump.write_text("emitted_s,tenant,with_wait_ms,processing_ms\n" + "\n".join(rows) + "\n")

    def pct(values: list[float], q: float) -> float:
        values = sorted(values)
        return 1000 * values[min(len(values) - 1, int(q * len(values)))]

    print(f"input: {counter[0]:,} engagements at {counter[0] / produced_seconds:,.0f}/s "
          f"(target {args.rate:,.0f}/s) for {produced_seconds:.1f}s")
    print(f"processed: all inputs within {caught_up_seconds:.1f}s of the start "
          f"= {counter[0] / caught_up_seconds:,.0f} events/s sustained")
    print(f"leads: {len(leads):,}; flow process CPU {flow_cpu:.1f}s "
          f"= {100 * flow_cpu / caught_up_seconds:.0f}% of one core")
    busy = sum(seconds for seconds, _ in stages.values())
    print(f"operator time: {busy:.1f}s of {caught_up_seconds:.1f}s; per stage, seconds "
          "(batches, ms per batch):")
    print("  " + ", ".join(f"{k} {v[0]:.2f}s ({v[1]:,.0f}, {1000 * v[0] / max(v[1], 1):.2f})"
                           for k, v in sorted(stages.items(), key=lambda kv: -kv[1][0])))
    for name, values in (("processing latency (closing input -> lead)", processing),
                         ("incl. wait for the tenant clock", with_wait)):
        print(f"  {name}: p50 {pct(values, 0.5):.1f} ms, p95 {pct(values, 0.95):.1f} ms, "
              f"p99 {pct(values, 0.99):.1f} ms, max {1000 * max(values):.1f} ms")
    stalled = sum(end - start for start, end in stalls)
    print(f"host: the loop on the bench core ran >= 3x its median CPU time for {1000 * stalled:.0f} ms "
          f"({100 * stalled / max(caught_up_seconds, 1e-9):.1f}% of the run); "
          f"{len(processing) - len(steady):,} leads overlapped those moments")
    if steady:
        print(f"  processing latency of the other {len(steady):,}: p50 {pct(steady, 0.5):.1f} ms, "
              f"p95 {pct(steady, 0.95):.1f} ms, p99 {pct(steady, 0.99):.1f} ms, "
              f"max {1000 * max(steady):.1f} ms")


if __name__ == "__main__":
    main()
