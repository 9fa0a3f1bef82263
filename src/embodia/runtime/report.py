"""One self-contained HTML page per agent run: the plan, each step's outcome, the video, and
plots of joint trajectories and per-layer timing (matplotlib, embedded as base64 PNG).

Self-contained because a report is mailed, attached to an issue or opened from CI
artifacts: the video is embedded too when it is small (else linked by relative path).
"""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

EMBED_VIDEO_MAX_BYTES = 8 * 2**20


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def joint_plot(traj: dict[str, np.ndarray], joint_names: list[str], steps: list[dict]) -> str | None:
    """Measured joints (solid) and safe setpoints (dashed) over time, steps shaded."""
    t = np.asarray(traj.get("t", []))
    if t.size < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q, sp, grip = np.asarray(traj["q"]), np.asarray(traj["setpoint"]), np.asarray(traj["grip"])
    t = t - t[0]
    fig, (ax, axg) = plt.subplots(2, 1, figsize=(10, 6), sharex=True, height_ratios=(3, 1))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j in range(q.shape[1]):
        c = colors[j % len(colors)]
        ax.plot(t, q[:, j], color=c, lw=1.2, label=joint_names[j] if j < len(joint_names) else f"q{j}")
        ax.plot(t, sp[:, j], color=c, lw=0.8, ls="--")
    t0 = traj["t"][0]
    for i, s in enumerate(steps):
        a, b = s["t_start"] - t0, s["t_end"] - t0
        for axis in (ax, axg):
            done = s.get("effects_ok", s["success"])  # the monitor's verdict, as the step table
            axis.axvspan(a, b, color="#2a9d8f" if done else "#e76f51", alpha=0.07 if i % 2 else 0.13)
        ax.text(a, ax.get_ylim()[1] if i == 0 else ax.get_ylim()[1], f" {s['skill']}", fontsize=8, va="top")
    hold = np.asarray(traj.get("holding", np.zeros(len(t))), bool)
    if hold.any():
        axg.fill_between(t, 0, 1, where=hold, color="grey", alpha=0.3, step="post", label="holding")
    axg.plot(t, grip, lw=1.2, label="gripper command")
    ax.set_ylabel("rad (solid: measured, dashed: setpoint)")
    axg.set_ylabel("closed fraction")
    axg.set_xlabel("s")
    ax.legend(fontsize=7, ncol=4, loc="lower left")
    axg.legend(fontsize=7, loc="upper right")
    ax.set_title("joint trajectories")
    return _png(fig)


def timing_plot(samples: dict[str, np.ndarray], summaries: dict[str, dict], mode: str) -> str | None:
    """Per layer: work per tick against the period; in real time also wake-up jitter."""
    layers = [n for n in ("reasoning", "perception", "control", "hal") if n in samples and len(samples[n])]
    if not layers:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    busy = [(samples[n][:, 2] - samples[n][:, 1]) * 1e3 for n in layers]
    ax = axes[0]
    ax.boxplot(busy, tick_labels=layers, showfliers=True, flierprops={"markersize": 2})
    for i, n in enumerate(layers, 1):
        period = 1e3 / summaries[n]["target_hz"]
        ax.hlines(period, i - 0.4, i + 0.4, colors="red", lw=1)
    ax.set_yscale("log")
    ax.set_ylabel("ms of work per tick (red: period)")
    ax.set_title(f"per-layer work ({mode})")
    ax = axes[1]
    if mode == "realtime":
        t0 = min(samples[n][0, 0] for n in layers)
        for n in layers:
            if n == "hal":  # stamped when control hands over, so it has no wake-up of its own
                continue
            s = samples[n]
            jit = np.abs(s[:, 1] - s[:, 0]) * 1e6
            ax.plot(s[:, 0] - t0, np.maximum(jit, 0.01), ".", ms=2,
                    label=f"{n} p99 {np.percentile(jit, 99):.2f} us")
        ax.set_yscale("log")
        ax.set_ylabel("wake-up jitter, us (floor 0.01)")
        ax.set_xlabel("s")
        ax.set_title("jitter over time")
        ax.legend(fontsize=7)
    else:
        rates = [summaries[n]["target_hz"] for n in layers]
        ax.bar(layers, rates, color="#457b9d")
        ax.set_yscale("log")
        ax.set_ylabel("Hz (simulated clock)")
        ax.set_title("layer rates")
    fig.tight_layout()
    return _png(fig)


def _table(rows: list[dict], cols: list[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(r.get(c)))}</td>" for c in cols) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v: Any) -> str:
    """Short, and never in e-notation for a rate: 1000.0 reads 1000, 999.7 reads 999.7."""
    if v is None:
        return ""
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}" if v.is_integer() else f"{v:.1f}"
        return f"{v:.3g}"
    if isinstance(v, list | tuple):
        return ", ".join(_fmt(x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items())
    return str(v)


def _video(video: str | None, out: Path) -> str:
    """The video embedded when small; the link (and a large video's src) is relative to the
    report's own folder, where the page is opened from, not to the folder the command ran in."""
    if not video or not Path(video).exists():
        return "<p>(no video recorded: run with --video OUT.mp4)</p>"
    p = Path(video)
    rel = html.escape(os.path.relpath(p.resolve(), out.parent.resolve()))
    src = rel
    if p.stat().st_size <= EMBED_VIDEO_MAX_BYTES:
        src = "data:video/mp4;base64," + base64.b64encode(p.read_bytes()).decode("ascii")
    return f'<video controls width="512" src="{src}"></video><p><a href="{rel}">{html.escape(p.name)}</a></p>'


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.88em}td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f1f3f5}.ok{color:#2a9d8f;font-weight:bold}.bad{color:#e63946;font-weight:bold}code{background:#f1f3f5;padding:1px 4px}"""


def write_report(path: str | Path, run: dict[str, Any], trajectory: dict[str, np.ndarray],
                 joint_names: list[str], samples: dict[str, np.ndarray],
                 intervention_samples: list[Any] | None = None) -> Path:
    """`run` is `AgentReport.to_dict()`; written atomically (temp name, then rename)."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    ok = run.get("success")
    text = run.get("verdict") or ("SUCCESS" if ok else "FAILED")  # names a scripted-expert fallback
    verdict = f'<span class="{"ok" if ok else "bad"}">{html.escape(text)}</span>'
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>embodia run: {html.escape(run['instruction'])}</title>",
             f"<style>{CSS}</style></head><body>",
             f"<h1>“{html.escape(run['instruction'])}”</h1>",
             f"<p>{verdict} &middot; seed {run['seed']} &middot; {html.escape(run['embodiment'])} &middot; "
             f"policy <code>{html.escape(run['policy'])}</code> &middot; {run['mode']} clock &middot; "
             f"{run['sim_s']:.1f} s robot time, {run['wall_s']:.1f} s wall &middot; retries {run['retries']}, "
             f"replans {run['replans']}</p>",
             f"<p>{html.escape(run.get('message') or '')}</p>"]
    for n in run.get("notices", []):
        parts.append(f"<p class='bad'>notice: {html.escape(n)}</p>")
    parts.append(f"<h2>Scene</h2><p>before: {html.escape(run['scene_before'])}<br>after: {html.escape(run['scene_after'])}</p>")
    if run.get("refusal"):
        parts.append(f"<h2>Refused</h2><p>{html.escape(run['refusal']['message'])}</p>")
    if run.get("plan"):
        plan = run["plan"]
        parts.append(f"<h2>Plan</h2><p>{html.escape(plan['planner'])} planner, {plan['planning_ms']} ms; goals: "
                     f"{html.escape(_fmt([', '.join(g) for g in plan['goals']]))}</p>")
        rows = [s | {"#": i + 1, "step": f"{s['skill']}({', '.join(s['args'])})"} for i, s in enumerate(plan["steps"])]
        parts.append(_table(rows, ["#", "step", "arm", "instruction", "preconditions", "effects"]))
        if plan.get("reasoning"):
            parts.append("<details><summary>reasoning</summary><pre>" + html.escape("\n".join(plan["reasoning"])) + "</pre></details>")
    if run.get("steps"):
        parts.append("<h2>Steps as executed</h2>")
        # On the lockstep clock no inference is timed: the latency is the simulated one (--latency-ms).
        lat = "inference_latency_ms_p50" + (" (simulated)" if run["mode"] == "lockstep" else "")
        rows = [s | {"step": f"{s['skill']}({', '.join(s['args'])})", "outcome": s.get("outcome", s["reason"]),
                     lat: s.get("inference_latency_ms_p50")} for s in run["steps"]]
        parts.append(_table(rows, ["step_id", "step", "outcome", "duration_s", "chunks", "skipped_actions",
                                   lat, "interventions", "effects_ok", "next", "why"]))
    parts.append("<h2>Video</h2>" + _video(run.get("video"), out))
    jp = joint_plot(trajectory, joint_names, run.get("steps", []))
    if jp:
        parts.append(f"<h2>Joint trajectories</h2><img src='data:image/png;base64,{jp}'>")
    if run.get("timing"):
        parts.append("<h2>Layers and timing</h2>")
        declared = {d["name"]: d for d in run.get("layers", [])}
        rows = []
        for name, s in run["timing"].items():
            if name == "process":
                continue
            rows.append(s | {"band_hz": declared.get(name, {}).get("band_hz"), "does": declared.get(name, {}).get("does")})
        parts.append(_table(rows, ["name", "does", "band_hz", "target_hz", "achieved_hz", "jitter_ms_p50",
                                   "jitter_ms_p99", "busy_ms_p50", "busy_ms_p99", "deadline_misses", "miss_rate"]))
        if "process" in run["timing"]:
            parts.append(f"<p>control process: {html.escape(_fmt(run['timing']['process']))}</p>")
        tp = timing_plot(samples, run["timing"], run["mode"])
        if tp:
            parts.append(f"<img src='data:image/png;base64,{tp}'>")
    parts.append(f"<h2>Safety interventions</h2><p>{html.escape(_fmt(run.get('interventions')) or 'none')}</p>")
    if intervention_samples:
        rows = [{"t": round(i.t, 3), "kind": i.kind, "arm": i.arm, "detail": i.detail, "value": i.value,
                 "limit": i.limit} for i in intervention_samples[:30]]
        parts.append(_table(rows, ["t", "kind", "arm", "detail", "value", "limit"]))
    parts.append("</body></html>")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, out)
    return out
