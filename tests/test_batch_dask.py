"""examples/batch_dask.py runs end to end: a JSONL of prompts through dask.bag on a LocalCluster of 2 worker
processes, each partition with its own unpickled DotTxt, against a FakeGateway.

The example runs in a subprocess, so the cluster (started once, by the example) and its threads and processes
are gone when the test ends.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 180.0  # an upper bound only: the run takes a few seconds, most of it starting the cluster


def test_dask_example_triages_every_prompt_once_on_two_worker_processes(tmp_path: Path) -> None:
    prompts = [f"ticket {i}: my billing is wrong" for i in range(12)]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(prompt) + "\n" for prompt in prompts))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env = {k: v for k, v in env.items() if not k.startswith("DOTTXT_")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "batch_dask.py"), str(path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    *rows, summary = result.stdout.splitlines()
    records = [json.loads(row) for row in rows]
    assert sorted(record["input"] for record in records) == sorted(prompts)
    assert all(record["result"]["intent"] in ("billing", "bug", "account", "other") for record in records)
    assert summary == "12 prompts, 12 triaged, 0 failed"
