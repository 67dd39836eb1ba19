"""Plots of `control_scale` results: heartbeat p99 and change -> every watcher (wake p99) against nodes.

Reads the runs of the given result files (bench/results/control_scale-<run id>.json), one line per
store (and server setup), and writes docs/img/perf-heartbeat-p99.png, perf-wake-p99.png,
perf-server-cores.png and perf-server-mb.png.
Refused runs (the generator fell behind) have no figures and are left out; noisy runs (other work
used more than half a core meanwhile) are drawn as open markers, apart from the others.

    python bench/plot_control_scale.py bench/results/control_scale-<run id>.json ...
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen

sys.path.insert(0, str(Path(__file__).resolve().parent))
from control_scale import NOISY_OTHER_CORES  # after its directory is on the path

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
PLOTS = (("heartbeat_p99_ms", "heartbeat p99 (ms)", 50.0, "perf-heartbeat-p99.png"),
         ("wake_p99_s", "change -> every watcher, p99 (s)", 1.0, "perf-wake-p99.png"),
         ("server_cpu_cores", "control plane CPU (cores)", 1.0, "perf-server-cores.png"),
         ("server_rss_mb", "control plane memory (MB, RSS)", 1024.0, "perf-server-mb.png"))


def series(paths: list[Path]) -> dict[str, list[dict]]:
    """Runs with figures, by line: store, the server's parser and loop, and whether the run was
    noisy; of several runs of one line at one size, the newest (the code as it is now)."""
    lines: dict[str, list[dict]] = defaultdict(list)
    for path in sorted(paths, key=lambda path: path.name):  # run ids sort by time
        result = json.loads(path.read_text())
        if "runs" not in result:  # written by the benchmark's first version (its load generator measured itself)
            print(f"{path}: no runs of this benchmark's format, left out", file=sys.stderr)
            continue
        for run in result["runs"]:
            if "refused" not in run:
                tls = ", TLS in HAProxy" if run.get("tls_proxy") else ", TLS" if run.get("tls") else ""
                label = f"{run['store']} ({run.get('http_parser', 'h11')}, {run.get('event_loop', 'asyncio')}{tls})"
                if run.get("machine_other_cores", 0.0) > NOISY_OTHER_CORES:
                    label += ", noisy"
                lines[label].append(run)
    newest = {label: {run["nodes"]: run for run in runs} for label, runs in lines.items()}  # later files win
    return {label: sorted(by_size.values(), key=lambda run: run["nodes"]) for label, by_size in sorted(newest.items())}


def plot(lines: dict[str, list[dict]], key: str, label: str, goal: float, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=110)
    for name, runs in lines.items():
        points = [(run["nodes"], run[key]) for run in runs if run.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=name,
                    fillstyle="none" if name.endswith("noisy") else "full")
    ax.axhline(goal, color="grey", linestyle="--", linewidth=1, label=f"goal: {goal:g}")
    ax.set_xscale("log")
    ax.set_xlabel("nodes, each holding a stream (newest run per size)")
    ax.set_ylabel(label)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="+")
    args = parser.parse_args()
    lines = series(args.results)
    for key, label, goal, name in PLOTS:
        plot(lines, key, label, goal, IMG / name)
        print(IMG / name)


if __name__ == "__main__":
    main()
