"""Write the scene briefs a corpus writer sees (objects, colours, positions, supports) and the
scene fingerprints for corpus.json, from the real simulator. See docs/brain_corpus_brief.md.

    MUJOCO_GL=egl .venv/bin/python scripts/brain_corpus_scenes.py --out DIR [--seeds 300-319]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from embodia.brain.state import State
from embodia.brain.testset import build_scenes, fingerprint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--pick", default="300-319", help="seed range for pick starts")
    ap.add_argument("--place", default="300-307", help="seed range for place starts (a cube in hand)")
    ap.add_argument("--close-drawer", default="300-307", help="seed range for close_drawer starts (drawer open)")
    args = ap.parse_args()

    def seeds(r: str) -> range:
        a, b = (int(x) for x in r.split("-"))
        return range(a, b + 1)

    keys = ([f"pick/{s}" for s in seeds(args.pick)] + [f"place/{s}" for s in seeds(args.place)]
            + [f"close_drawer/{s}" for s in seeds(args.close_drawer)])
    graphs = build_scenes(keys)
    lines, fps = [], {}
    for k in keys:
        st = State.from_scene_graph(graphs[k], ("main",))
        fps[k] = fingerprint(st)
        start, seed = k.split("/")
        lines += [f"### scene start={start} seed={seed}", "",
                  f"- drawer: {st.drawer} (a brown drawer on the robot's left side of the table)"]
        for n, o in st.objects.items():
            x, y, _ = o.position
            if o.cls == "cube":
                s = st.support[n]
                where = {"table": "on the table", "hand": "held in the robot's hand", "bowl": "in the bowl",
                         "plate": "on the plate", "drawer": "inside the drawer"}.get(
                    s, f"stacked on the {s.replace('_', ' ')}")
                lines.append(f"- {o.colour} cube (`{n}`): {where}; at x={x:.2f} y={y:+.2f}")
            elif o.cls == "drawer":
                lines.append(f"- drawer (`drawer`): at x={x:.2f} y={y:+.2f}")
            else:
                lines.append(f"- {o.colour} {o.cls} (`{n}`): at x={x:.2f} y={y:+.2f}")
        lines.append("")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scenes.md").write_text("\n".join(lines))
    (args.out / "fingerprints.json").write_text(json.dumps(fps, indent=1))
    print(f"{len(keys)} scenes -> {args.out / 'scenes.md'}, {args.out / 'fingerprints.json'}")


if __name__ == "__main__":
    main()
