"""Run every benchmark with its default arguments (``make bench``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = ["machine_jitter.py", "decode_speed.py", "recording_speed.py", "model_quality.py", "plain_loop.py", "stages.py", "crm_chaos.py", "compare.py"]

if __name__ == "__main__":
    here = Path(__file__).parent
    for name in BENCHES:
        print(f"== {name}", flush=True)
        subprocess.run([sys.executable, str(here / name)], check=True)
