"""What the shipped instruct model refuses: the shipped harmful and benign requests, greedy, judged
by the refusal-marker judge. Prints counts per category and style; the datasheet
(src/steerlab/data/models.md) quotes its output.

    .venv/bin/python -m bench.instruct_refusals [--max-new-tokens 32] [--out replies.jsonl]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict

from steerlab import load_model
from steerlab.data import shipped_path
from steerlab.evals.refusal_markers import marker_verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--out", default=None, help="write every reply with its verdict here (JSONL)")
    args = parser.parse_args()
    lm = load_model("instruct", dtype=args.dtype)
    written = []
    for name in ("harmful_requests", "benign_requests"):
        rows = [json.loads(line) for line in shipped_path(name).read_text().splitlines() if line.strip()]
        replies = lm.generate([r["prompt"] for r in rows], max_new_tokens=args.max_new_tokens)
        refused = [marker_verdict(reply) == "refusal" for reply in replies]
        groups: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for row, r in zip(rows, refused, strict=True):
            for key in (row.get("style"), row["category"]):
                if key:
                    groups[key][0] += int(r)
                    groups[key][1] += 1
        print(f"{name}: refused {sum(refused)} of {len(rows)}")
        for key, (k, n) in sorted(groups.items()):
            print(f"  {key}: {k}/{n}")
        written += [{**row, "reply": reply, "refused": r} for row, reply, r in zip(rows, replies, refused, strict=True)]
    if args.out:
        with open(args.out, "w") as f:
            f.writelines(json.dumps(row) + "\n" for row in written)


if __name__ == "__main__":
    main()
