"""One schema over a JSONL file of prompts on a Dask cluster: `dask.bag`, one DotTxt per partition.

The DotTxt made here is pickled into every task (its configuration only, the API
key included); each partition unpickles its own copy, runs its prompts through
`generate_many` on a few threads, and closes it. Spark's `mapPartitions` and
Ray's `map_batches` take the same function: see docs/batch.md.

A LocalCluster of two worker processes stands in for the cluster, and unless
DOTTXT_BASE_URL is set, a FakeGateway on loopback for the API. Watch for: one
JSON line per prompt (in partition order, each partition in completion order),
then the summary line `N prompts, N triaged, 0 failed`.

Run: python examples/batch_dask.py [PROMPTS.jsonl]   (needs `pip install "dask[distributed]"`)
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dask.bag as db
from distributed import Client, LocalCluster

from dottxt import DotTxt
from dottxt.testing import FakeGateway

MODEL = os.environ.get("DOTTXT_MODEL") or "dottxt/fake-model"
TRIAGE = {
    "type": "object",
    "properties": {
        "intent": {"type": "string", "enum": ["billing", "bug", "account", "other"]},
        "summary": {"type": "string", "maxLength": 60},
    },
    "required": ["intent", "summary"],
    "additionalProperties": False,
}
PROMPTS = [
    "my billing is wrong: I was charged twice",
    "the app crashes with a bug when I upload a photo",
    "how do I delete my account",
    "the invoice shows the wrong billing address",
    "login page has a bug on Safari",
    "can I move my account to another email",
    "thanks, all good now",
    "double billing again this month",
]


def triage_partition(prompts: Iterable[str], client: DotTxt) -> list[dict[str, Any]]:
    """Runs on a worker: this partition's prompts through its own client, 4 requests at once."""
    rows: list[dict[str, Any]] = []
    with client:  # this task's own unpickled copy: its connections are closed with it
        for item in client.generate_many(list(prompts), model=MODEL, response_format=TRIAGE, concurrency=4):
            if item.ok:
                rows.append({"input": item.input, "result": item.value})
            else:  # plain data back to the driver, never the exception object
                rows.append({"input": item.input, "error": f"{type(item.error).__name__}: {item.error}"})
    return rows


def run(path: Path, base_url: str, cluster: LocalCluster) -> list[dict[str, Any]]:
    """Every prompt of the JSONL file at `path`, triaged on the cluster."""
    client = DotTxt(api_key=os.environ.get("DOTTXT_API_KEY") or "any-key", base_url=base_url)  # pickled per task
    prompts = db.read_text(str(path), blocksize=64).map(json.loads).filter(bool)
    with Client(cluster):
        rows: list[dict[str, Any]] = prompts.map_partitions(triage_partition, client).compute()
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(folder) / "prompts.jsonl"
        if len(sys.argv) == 1:
            path.write_text("".join(json.dumps(prompt) + "\n" for prompt in PROMPTS))
        with contextlib.ExitStack() as stack:
            base_url = os.environ.get("DOTTXT_BASE_URL") or stack.enter_context(FakeGateway(models=(MODEL,))).base_url
            cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
            with cluster:
                rows = run(path, base_url, cluster)
    for row in rows:
        print(json.dumps(row))
    failed = sum("error" in row for row in rows)
    print(f"{len(rows)} prompts, {len(rows) - failed} triaged, {failed} failed")


if __name__ == "__main__":
    main()
