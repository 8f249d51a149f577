"""Recovery figures: snapshot size, time to resume, duplicate outputs per crash.

    python bench/recovery.py [--investors 10000] [--days 20] [--crashes 3]

Publishes a generated world to the dev broker and runs ``esg-leads run --until-end``
with a recovery directory, SIGKILLing it ``--crashes`` times at even intervals and
restarting it until it drains. Prints the recovery store's size scaled to 10,000
investors, how long each restart took to publish again (process start to its first
new output message, imports included), and the raw duplicate outputs per crash
(re-sent records with keys already published; consumers upsert them away).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from esg_leads.connectors.dev_broker import DevBroker
from esg_leads.connectors.publish import publish_recording
from esg_leads.replay.generator import generate
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.topics import ALL_TOPICS, OUTPUT_TOPICS
from esg_leads.connectors.recording import RecordingReader
from esg_leads.replay.diff import compare, load_run, render
from esg_leads.replay.record import record

ESG_LEADS = str(Path(sys.executable).parent / "esg-leads")
#: The mock broker keeps about 5 MB per partition and silently drops older messages:
#: enough partitions that no output is lost (lead records are a few KB each).
PARTITIONS = 16


def published(bootstrap: str, scratch: Path) -> list[dict]:
    """Every output record on the broker, duplicates included (via a recording)."""
    record({"bootstrap.servers": bootstrap}, list(OUTPUT_TOPICS), scratch, overwrite=True)
    return [orjson.loads(m.value) for m in RecordingReader(scratch) if m.value is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--investors", type=int, default=10000)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--crashes", type=int, default=3)
    parser.add_argument("--snapshot-seconds", type=float, default=2.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="esg-recovery-"))
    try:
        world = tmp / "world"
        generate(WorldSpec(investors=args.investors, days=args.days, seed=5,
                           properties=args.investors // 10), world)
        config = tmp / "settings.toml"
        config.write_text((world / "config.toml").read_text()
                          + f"[recovery]\nsnapshot_interval = {args.snapshot_seconds}\n"
                          + '[audit]\ndirectory = ""\n')
        recovery = tmp / "recovery"
        command = [ESG_LEADS, "run", "--config", str(config), "--until-end",
                   "--recovery-dir", str(recovery)]
        with DevBroker(topics=list(ALL_TOPICS), partitions=PARTITIONS) as broker:
            sent = publish_recording(world, broker.bootstrap)["messages"]
            command += ["--bootstrap", broker.bootstrap]
            # A clean run first, to know how long the whole input takes.
            started = time.monotonic()
            subprocess.run(command[:-2] + ["--recovery-dir", str(tmp / "clean"),
                                           "--bootstrap", broker.bootstrap],
                           check=True, cwd=tmp, capture_output=True)
            clean_seconds = time.monotonic() - started
            store = sum(p.stat().st_size for p in (tmp / "clean").glob("part-*"))
            reference = len(published(broker.bootstrap, tmp / "clean-outputs"))

        with DevBroker(topics=list(ALL_TOPICS), partitions=PARTITIONS) as broker:
            publish_recording(world, broker.bootstrap)
            command[-1] = broker.bootstrap
            resumes, before = [], 0
            for crash in range(args.crashes + 1):
                process = subprocess.Popen(command, cwd=tmp, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
                started = time.monotonic()
                if crash:  # how long until this restart publishes something new
                    while process.poll() is None and len(published(broker.bootstrap, tmp / 'outputs')) <= before:
                        time.sleep(0.05)
                    resumes.append(time.monotonic() - started)
                if crash < args.crashes:
                    time.sleep(max(0.0, clean_seconds / (args.crashes + 1) - (time.monotonic() - started)))
                    process.send_signal(signal.SIGKILL)
                process.wait(600)
                before = len(published(broker.bootstrap, tmp / 'outputs'))
            outputs = published(broker.bootstrap, tmp / "outputs")
            keys = {o["idempotency_key"] for o in outputs}
        report = compare(load_run(tmp / "clean-outputs"), load_run(tmp / "outputs"))

        print(f"world: {args.investors:,} investors, {args.days} days, {sent:,} messages; "
              f"clean bounded run {clean_seconds:.1f}s")
        print(f"recovery store after the clean run: {store / 1e6:.1f} MB "
              f"= {store / 1e6 * 10_000 / args.investors:.1f} MB per 10,000 investors")
        print(f"resume (restart to first new output, imports included): "
              + ", ".join(f"{s:.1f}s" for s in resumes))
        duplicates = len(outputs) - len(keys)
        print(f"outputs: {reference:,} distinct in the clean run, {len(keys):,} distinct after "
              f"{args.crashes} crashes, {len(outputs):,} raw: {duplicates:,} duplicates "
              f"= {duplicates / max(1, args.crashes):,.0f} per crash "
              f"(snapshot every {args.snapshot_seconds:g}s)")
        print("decisions after consumer-side dedup vs the clean run: " + render(report))
    finally:
        if "--keep" not in sys.argv:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)


if __name__ == "__main__":
    main()
