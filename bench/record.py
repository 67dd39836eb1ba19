"""Where a benchmark's result goes: bench/results/<bench>-<run id>.json, the run id a UTC-free local
timestamp (%Y%m%dT%H%M%S) that also names the run in docs/performance.md."""
from __future__ import annotations

import json
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def save(bench: str, result: dict, json_out: bool = False) -> Path:
    """Stamp `result` with a run id, write it, and print it when `json_out`; its path."""
    run_id = time.strftime("%Y%m%dT%H%M%S")
    result["run_id"] = run_id
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{bench}-{run_id}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if json_out:
        print(json.dumps(result, indent=2))
    return path
