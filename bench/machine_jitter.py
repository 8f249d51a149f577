"""How steady is this machine's CPU? The floor under any latency percentile.

    python bench/machine_jitter.py [--seconds 15] [--cpu N]

Runs the same small pure-Python loop (a few milliseconds of work) over and over,
optionally pinned to one CPU, with nothing else of ours running, and prints the
distribution of its durations. On a dedicated core every run takes the same
time; on a shared virtual machine some take several times longer (the host runs
someone else). A streaming job whose processing latency is N ms at the median
cannot have a p99 below what this loop's p99/median ratio does to N ms, nor
absorb such a slowdown without queueing if it is busy most of the time.
Run it next to ``bench/kafka_latency.py`` to read that bench's tail.
"""

from __future__ import annotations

import argparse
import os
import time


def work() -> int:
    total = 0
    for i in range(20_000):
        total += i * i
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this CPU")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    durations = []
    end = time.perf_counter() + args.seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        work()
        durations.append(time.perf_counter() - started)
    durations.sort()
    n = len(durations)

    def ms(q: float) -> float:
        return 1000 * durations[min(n - 1, int(q * n))]

    median = ms(0.5)
    print(f"{n:,} runs of the same loop: median {median:.2f} ms, p99 {ms(0.99):.2f} ms "
          f"({ms(0.99) / median:.1f}x), p99.9 {ms(0.999):.2f} ms ({ms(0.999) / median:.1f}x), "
          f"max {1000 * durations[-1]:.2f} ms ({1000 * durations[-1] / median:.1f}x)")


if __name__ == "__main__":
    main()
