"""Whether two sets of runs of ``run.sh`` logged the same metrics (all but ``steps_per_s``),
record by record, to the last bit; prints "same" or "DIFF" per run with its last evaluation.

    python benchmarks/same_results/compare.py OUT_BEFORE OUT_AFTER
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def records(path: Path) -> list[dict] | None:
    """The records of a run's metrics.jsonl without the timing, or None without the file."""
    if not path.exists():
        return None
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [{k: v for k, v in row.items() if k != "steps_per_s"} for row in rows]


def main(before: Path, after: Path) -> int:
    differing = 0
    for run in sorted(d for d in before.iterdir() if d.is_dir()):
        old, new = records(run / "metrics.jsonl"), records(after / run.name / "metrics.jsonl")
        last = old[-1] if old else {}
        evaluation = {k: v for k, v in last.items() if k.startswith(("eval_", "search_return"))}
        same = old is not None and old == new
        differing += not same
        print("same" if same else "DIFF", run.name, f"{len(old or [])} records", evaluation)
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
