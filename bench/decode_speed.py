"""Decode speed: Kafka value bytes -> validated event, two ways, on a generated world.

    python bench/decode_speed.py [--investors 3000] [--days 20]

Prints messages/s of ``model_validate_json`` (what the flow uses) and of
``orjson.loads`` + ``model_validate`` (lax, since strict python-mode validation
refuses ISO timestamp strings), over the same valid messages, per topic and overall.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict

import orjson

from esg_leads.connectors.recording import RecordingReader
from esg_leads.replay.generator import generate
from esg_leads.replay.simulate import WorldSpec
from esg_leads.schemas.codec import DecodeFailure, decode_event
from esg_leads.schemas.topics import INPUT_TOPICS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--investors", type=int, default=3000)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        generate(WorldSpec(investors=args.investors, days=args.days, malformed_rate=0.0), tmp)
        by_topic: dict[str, list[bytes]] = defaultdict(list)
        for message in RecordingReader(tmp):
            try:
                decode_event(message.topic, message.value)
            except DecodeFailure:
                continue
            by_topic[message.topic].append(message.value)

    total = sum(len(v) for v in by_topic.values())
    print(f"{total:,} valid messages, best of {args.repeat} runs")
    results: dict[str, dict[str, float]] = defaultdict(dict)
    for way in ("model_validate_json", "orjson+model_validate"):
        for topic, values in sorted(by_topic.items()):
            model = INPUT_TOPICS[topic].model
            best = float("inf")
            for _ in range(args.repeat):
                started = time.perf_counter()
                if way == "model_validate_json":
                    for value in values:
                        model.model_validate_json(value)
                else:
                    loads = orjson.loads
                    for value in values:
                        model.model_validate(loads(value), strict=False)
                best = min(best, time.perf_counter() - started)
            results[way][topic] = best
    print(f"{'topic':<24}{'validate_json msg/s':>22}{'orjson+validate msg/s':>24}")
    for topic, values in sorted(by_topic.items()):
        a = len(values) / results["model_validate_json"][topic]
        b = len(values) / results["orjson+model_validate"][topic]
        print(f"{topic:<24}{a:>22,.0f}{b:>24,.0f}")
    a = total / sum(results["model_validate_json"].values())
    b = total / sum(results["orjson+model_validate"].values())
    print(f"{'all':<24}{a:>22,.0f}{b:>24,.0f}")
    print(f"kept: {'model_validate_json' if a >= b else 'orjson+model_validate'} "
          f"({max(a, b) / min(a, b):.2f}x faster)")


if __name__ == "__main__":
    main()
