"""Give a checkpoint trained before instruction retrieval existed what training now records:
its training datasets' instructions (`known_instructions`) and the object vocabulary.

    python scripts/add_known_instructions.py CKPT [--data DIR,DIR...]

The datasets default to the ones config.json's `extra.datasets` names. Only config.json
changes; the weights do not."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embodia.cerebellum.instruction_retrieval import retrieval_fields
from embodia.data.layout import atomic_write_json
from embodia.data.reader import DatasetReader


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--data", help="comma-separated training datasets (default: config.json extra.datasets)")
    args = ap.parse_args()
    path = args.checkpoint / "config.json"
    cfg = json.loads(path.read_text())
    data = args.data.split(",") if args.data else cfg.get("extra", {}).get("datasets", [])
    if not data:
        raise SystemExit(f"{path} names no training datasets; pass --data")
    tasks, words = retrieval_fields([DatasetReader(d).tasks for d in data], cfg["env_state_names"])
    cfg["known_instructions"], cfg["object_words"] = tasks, words
    atomic_write_json(path, cfg)
    print(json.dumps({"checkpoint": str(args.checkpoint), "known_instructions": len(tasks),
                      "object_words": len(cfg["object_words"])}))


if __name__ == "__main__":
    main()
