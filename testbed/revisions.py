"""Another git revision's code, for benchmarks that compare it with the work tree in one run."""
from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def export(revision: str, into: Path, *paths: str) -> Path:
    """`paths` (folders of the repository) as they are at `revision`, unpacked under `into`; the
    repository is only read."""
    data = subprocess.run(["git", "archive", revision, *paths], cwd=ROOT, capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        archive.extractall(into, filter="data")
    return into
