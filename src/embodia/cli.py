"""The one `embodia` command. Sub-commands: eval, demo, train, collect, data, embodiments, scene, plan, run."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from embodia.runtime import DEFAULT_AGENT_CHECKPOINT

if TYPE_CHECKING:
    from embodia.brain.plan import Plan

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="embodia: brain, cerebellum, data, body, runtime and serving for robots.")
err = Console(stderr=True)
out = Console()


def _show_version(value: bool) -> None:
    """--version: eager, so it answers before any sub-command is asked for."""
    if value:
        from embodia import __version__

        print(f"embodia {__version__}")
        raise typer.Exit()


@app.callback()
def _main_options(
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """embodia: brain, cerebellum, data, body, runtime and serving for robots."""


def _fail(msg: str) -> None:
    """One line on stderr (not wrapped, not read as markup: messages quote lists) and exit 2."""
    err.print(f"[bold red]error:[/] {escape(msg)}", soft_wrap=True)
    raise typer.Exit(2)


def _check_writable(flag: str, folder: Path | None) -> None:
    """Refuses an output folder that cannot be written before the run, not after minutes of it."""
    if folder is None:
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        _fail(f"{flag}: cannot create {folder} ({e.strerror})")
    try:  # a real write: access() says yes to root even on read-only mounts and /proc
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as e:
        _fail(f"{flag}: cannot write in {folder} ({e.strerror})")


INSTRUCTION_SPLITS = ("train", "heldout", "all")  # TabletopEnv's instruction_split values


def camera_names(text: str | None) -> tuple[str, ...] | None:
    """--cameras: None (flag absent) = every camera; 'none' = no camera; else the listed ones."""
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    if not names:
        _fail("--cameras is empty: name cameras, or 'none' for state and actions only")
    return names


def _eval_suite(suite: str, policy: str, task: str | None, episodes: int, seed_start: int | None,
                datasets: list[Path], video: Path | None, as_json: bool, workers: int = 1,
                ray_address: str | None = None) -> None:
    """`eval --suite`: the scripted experts or a checkpoint over a suite's tasks
    (eval/suite_rollout.py), the experts' ceiling beside every result; with workers > 1 or a
    Ray address, on Ray actors (eval/parallel.py)."""
    from embodia.body.suites import get_suite
    from embodia.eval.suite_rollout import (
        EVAL_SEED_START,
        LEROBOT_PREFIX,
        SuiteEvalConfig,
        check_seed_overlap,
        checkpoint_datasets,
        evaluate_suite,
        suite_policy_for,
    )

    _check_writable("--video", video)
    start = EVAL_SEED_START if seed_start is None else seed_start
    try:  # names, seeds and overlaps first: a typo costs one line, not a checkpoint load
        cfg = SuiteEvalConfig(suite=suite, task=task or "mt10", episodes=episodes, seed_start=start, cameras=())
        ours = policy != "expert" and not policy.startswith(LEROBOT_PREFIX)  # lerobot: loads in its child
        if ours:
            datasets = [*datasets, *checkpoint_datasets(policy)]
        check_seed_overlap(datasets, start, episodes)
        bench = get_suite(suite)
        learned = None
        if ours:
            from embodia.cerebellum.checkpoint import load_checkpoint

            learned = load_checkpoint(policy, embodiment=bench.embodiment)
            pcfg = getattr(learned, "cfg", None)
            cfg = SuiteEvalConfig(suite=suite, task=task or "mt10", episodes=episodes, seed_start=start,
                                  cameras=tuple(getattr(pcfg, "cameras", (bench.camera,))),
                                  image_size=getattr(pcfg, "image_size", None))
        elif policy != "expert":  # a LeRobot checkpoint: there, and the suite's camera at its size
            from embodia.eval.lerobot_policy import (
                LeRobotPolicyError,
                lerobot_python,
                resolve_checkpoint,
            )

            try:
                resolve_checkpoint(policy[len(LEROBOT_PREFIX):])
                lerobot_python()
            except LeRobotPolicyError as e:
                raise ValueError(f"--policy: {e}") from None
            cfg = SuiteEvalConfig(suite=suite, task=task or "mt10", episodes=episodes, seed_start=start)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=as_json) as bar:
        bars = {t: bar.add_task(t, total=episodes) for t in cfg.tasks}

        def advance(t: str) -> None:
            bar.advance(bars[t])

        if workers > 1 or ray_address is not None:  # each actor loads the checkpoint itself
            from embodia.eval.parallel import evaluate_suite_parallel

            report = evaluate_suite_parallel(cfg, policy, workers, ray_address, video, progress=advance)
        else:
            report = evaluate_suite(cfg, suite_policy_for(suite, policy, learned), policy, video, progress=advance)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"{policy} on {suite} {cfg.task}, seeds {cfg.seeds.start}..{cfg.seeds.stop - 1}")
    for col in ("task", "success", "wilson 95%", "mean length", "expert ceiling"):
        table.add_column(col)
    for name, r in report["tasks"].items():
        lo, hi = r["wilson95"]
        ceiling = r["expert_ceiling"]
        table.add_row(name, f"{r['successes']}/{r['episodes']} ({r['success_rate']:.0%})", f"[{lo:.2f}, {hi:.2f}]",
                      f"{r['mean_episode_length']:.1f}", f"{ceiling['success_rate']:.0%}" if ceiling else "-")
    out.print(table)
    ceiling = report["expert_ceiling"]["mean_success_rate"]
    out.print(f"mean over tasks {report['mean_success_rate']:.1%}"
              + (f" (scripted experts: {ceiling:.1%})" if ceiling is not None else ""))


def _collect_suite(suite: str, task: str | None, out_dir: Path, episodes: int, seed_start: int, workers: int,
                   cameras: tuple[str, ...] | None, image_size: int | None, tier: str, keep_failures: bool,
                   as_json: bool) -> None:
    """`collect --suite`: a suite's scripted experts into one dataset (data/suite_recording.py)."""
    from embodia.data.suite_recording import SuiteCollectConfig, collect_suite

    t0 = time.perf_counter()
    try:
        cfg = SuiteCollectConfig(out=out_dir, suite=suite, task=task or "mt10", episodes=episodes,
                                 seed_start=seed_start, workers=workers, cameras=cameras, image_size=image_size,
                                 tier=tier, keep_failures=keep_failures)
        _check_writable("--out", out_dir)
        with Progress(TextColumn(f"collect {suite} {cfg.task}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err) as bar:
            job = bar.add_task("", total=episodes * len(cfg.tasks))
            report = collect_suite(cfg, progress=lambda done, total: bar.update(job, completed=done))
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished episodes are saved; run the same command to resume")
        raise typer.Exit(130) from None
    elapsed = time.perf_counter() - t0
    summary = {"out": str(out_dir), "suite": suite, "tasks": cfg.tasks, "recorded": report.recorded,
               "already_present": report.already_present, "failed_skipped": report.failed_skipped,
               "frames": report.frames, "seconds": round(elapsed, 2),
               "frames_per_s": round(report.frames / elapsed, 1) if elapsed > 0 else None}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        err.print(f"recorded {report.recorded} episodes ({report.frames} frames) of {len(cfg.tasks)} task(s); "
                  f"{report.already_present} were already there; {report.failed_skipped} failed episodes skipped")


def _check_general_on_tabletop(path: str, learned: object, embodiment: str, **preset_only: object) -> None:
    """A general-core checkpoint drives the tabletop only where its dataset's features are what
    TabletopEnv observes and takes: the state and action names of the embodiment, square
    cameras of one size. Anything else is one line naming the field, before an episode runs."""
    from embodia.body.embodiments import get_embodiment

    given = [f"--{k.replace('_', '-')}" for k, v in preset_only.items() if v not in (None, False)]
    if given:
        _fail(f"{', '.join(given)} belong to the object-centric preset; {path} is a general-core checkpoint")
    f, spec = learned.cfg.features, get_embodiment(embodiment)
    try:
        layout = spec.action_layout(learned.cfg.action_space)
    except ValueError:
        _fail(f"{path}: action space {learned.cfg.action_space!r} is not one {embodiment!r} takes "
              f"({list(spec.action_spaces)})")
    if list(f.state_names) != list(spec.state_names):
        _fail(f"{path}: observation.state names {f.state_names[:4]}... are not {embodiment!r}'s "
              f"({list(spec.state_names)[:4]}..., {spec.state_dim} values)")
    if list(f.action_names) != list(layout.names):
        _fail(f"{path}: action names {f.action_names} are not {embodiment!r}'s {layout.name} {list(layout.names)}")
    unknown = [c for c in f.camera_names if c not in [cam.name for cam in spec.cameras]]
    if unknown:
        _fail(f"{path}: camera(s) {unknown} are not on {embodiment!r} ({[cam.name for cam in spec.cameras]})")
    if f.cameras and not learned.cfg.image_size:
        _fail(f"{path}: cameras {[(c.name, c.height, c.width) for c in f.cameras]} are not square and of one size, "
              f"which the tabletop renders")


@app.command("eval")
def eval_cmd(
    policy: Annotated[str, typer.Option(help="'expert' (scripted experts) or a checkpoint folder")] = "expert",
    suite: Annotated[str | None, typer.Option(
        help="an external benchmark (metaworld): --task is then its task or 'mt10', seeds default "
             "to 100000..")] = None,
    dataset: Annotated[list[Path] | None, typer.Option(
        help="with --suite: a demonstration dataset whose recorded seeds evaluation must not "
             "overlap (repeatable; a checkpoint's own training datasets are checked too)")] = None,
    embodiment: Annotated[str, typer.Option(help="arm7 | humanoid_upper")] = "arm7",
    skill: Annotated[str | None, typer.Option(help="a meta-skill, or 'all'")] = None,
    task: Annotated[str | None, typer.Option(help="a multi-step task instead of a skill")] = None,
    arm: Annotated[str | None, typer.Option(help="which arm acts (humanoid: left | right)")] = None,
    episodes: Annotated[int, typer.Option(min=1)] = 10,
    seed_start: Annotated[int | None, typer.Option(min=0, help="default 0 (a suite: 100000)")] = None,
    instructions: Annotated[str, typer.Option(help="train | heldout | all paraphrases")] = "train",
    video: Annotated[Path | None, typer.Option(help="save one mp4 per episode here")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON to stdout")] = False,
    n_action_steps: Annotated[int | None, typer.Option(min=1, help="learned policy: actions per chunk")] = None,
    flow_temperature: Annotated[float | None, typer.Option(
        min=0.0, help="learned flow policy: scale of the sampling noise (default: the checkpoint's)")] = None,
    privileged_state: Annotated[bool, typer.Option(
        help="analysis only: feed the simulator's true object state instead of the estimator's")] = False,
    temporal_ensemble: Annotated[float | None, typer.Option(
        min=0.0, help="learned policy: a chunk every step, overlapping chunks blended with ACT's "
                      "exp(-k*i) weights (default: the checkpoint's; receding horizon if unset)")] = None,
    occlusion_hold: Annotated[bool | None, typer.Option(
        help="learned policy: objects the hand hides keep their last seen position "
             "(default: the checkpoint's)")] = None,
    instruction_retrieval: Annotated[bool | None, typer.Option(
        help="learned policy: act on the nearest training instruction that names the same objects "
             "(default: the checkpoint's)")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="run the episodes on this many Ray actors, one CPU and one thread each "
                    "(1: in this process); the same seeded episodes and report")] = 1,
    ray_address: Annotated[str | None, typer.Option(
        help="run the workers on this Ray cluster (default: a local Ray instance with --workers CPUs)")] = None,
) -> None:
    """Run seeded episodes and report success rate (Wilson 95%) and episode length."""
    if suite is not None:
        if skill is not None:
            _fail("--suite evaluates the suite's tasks: give --task (a task name or 'mt10'), not --skill")
        _eval_suite(suite, policy, task, episodes, seed_start, list(dataset or []), video, as_json,
                    workers, ray_address)
        return
    seed_start = 0 if seed_start is None else seed_start
    from embodia.body.embodiments import get_embodiment
    from embodia.body.skills import SKILLS
    from embodia.body.tasks import get_task
    from embodia.eval.rollout import (
        ExpertAgent,
        InferenceOverrides,
        PolicyAgent,
        TabletopSpec,
        evaluate,
        is_general,
    )

    # Checked before any checkpoint loads or episode starts, so a typo costs one line, not a traceback.
    if instructions not in INSTRUCTION_SPLITS:
        _fail(f"--instructions must be one of {', '.join(INSTRUCTION_SPLITS)}, got {instructions!r}")
    if task is not None and skill is not None:
        _fail("give either --skill or --task, not both")
    _check_writable("--video", video)
    agent_factory, cameras, image_size = ExpertAgent, (), 96
    overrides = InferenceOverrides(n_action_steps, flow_temperature, temporal_ensemble, occlusion_hold,
                                   instruction_retrieval, privileged_state)
    if policy != "expert":
        from embodia.cerebellum.checkpoint import load_checkpoint

        try:
            learned = load_checkpoint(policy, embodiment=embodiment)
        except (FileNotFoundError, ValueError) as e:
            _fail(str(e))
        general = is_general(learned)
        if general:
            _check_general_on_tabletop(policy, learned, embodiment, flow_temperature=flow_temperature,
                                       occlusion_hold=occlusion_hold, instruction_retrieval=instruction_retrieval,
                                       privileged_state=privileged_state)
        elif privileged_state and learned.object_state is None:
            _fail(f"{policy} has no object state input to replace")
        try:  # an ensemble: every member; each Ray worker applies the same to its own copy
            overrides.apply(learned)
        except ValueError as e:
            _fail(f"{policy}/{e}")
        cameras = tuple(learned.cfg.cameras)
        image_size = learned.cfg.image_size if cameras else 96  # a state-only policy renders nothing

        def agent_factory():
            return PolicyAgent(learned)
    try:
        spec = get_embodiment(embodiment)
        arm_name = spec.arm(arm).name
        if task is not None:
            get_task(task)
            runs = [("task", task)]
        else:
            skills = list(SKILLS) if skill in (None, "all") else [skill]
            for s in skills:
                if s not in SKILLS:
                    raise ValueError(f"unknown skill {s!r}; known: {sorted(SKILLS)}")
            runs = [("skill", s) for s in skills]
    except ValueError as e:
        _fail(str(e))
    report: dict = {"policy": policy, "embodiment": embodiment, "arm": arm_name,
                    "seed_start": seed_start, "episodes_per_run": episodes,
                    "instructions": instructions, "results": {}}
    if policy != "expert":  # what the checkpoint ran with, overrides included
        c = learned.cfg
        report["inference"] = {"n_action_steps": c.n_action_steps, "temporal_ensemble": c.temporal_ensemble,
                               **{k: getattr(c, a, None) for k, a in (
                                   ("flow_temperature", "flow_temperature"), ("object_state", "env_state_input"),
                                   ("occlusion_hold", "occlusion_hold"),
                                   ("instruction_retrieval", "instruction_retrieval"))}}
    env_spec = TabletopSpec(embodiment, arm_name, cameras, image_size, instructions)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=as_json) as bar:
        if workers > 1 or ray_address is not None:  # every run's episodes over the actors at once
            from embodia.eval.parallel import evaluate_parallel

            bars = [bar.add_task(f"{kind} {name}", total=episodes) for kind, name in runs]
            results = evaluate_parallel(env_spec, policy, runs, episodes, seed_start, workers, ray_address,
                                        overrides, video, progress=lambda r: bar.advance(bars[r]))
            report["results"] = {res.name: res.summary() for res in results}
        else:
            for kind, name in runs:
                t = bar.add_task(f"{kind} {name}", total=episodes)
                res = evaluate(lambda kind=kind, name=name: env_spec.make(kind, name), agent_factory(), name,
                               episodes, seed_start, video, progress=lambda t=t: bar.advance(t))
                report["results"][name] = res.summary()
    rates = [r["success_rate"] for r in report["results"].values()]
    report["mean_success_rate"] = sum(rates) / len(rates)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"{policy} on {embodiment} ({arm_name} arm), seeds {seed_start}..{seed_start + episodes - 1}")
    for col in ("run", "success", "wilson 95%", "mean length"):
        table.add_column(col)
    for name, r in report["results"].items():
        lo, hi = r["wilson95"]
        table.add_row(name, f"{r['successes']}/{r['episodes']} ({r['success_rate']:.0%})",
                      f"[{lo:.2f}, {hi:.2f}]", f"{r['mean_episode_length']:.1f}")
    out.print(table)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="where the video and summary go")] = Path("out/demo"),
    seed: Annotated[int, typer.Option(min=0)] = 7,
    task: str = "drawer_store",
    embodiment: str = "arm7",
) -> None:
    """Run one multi-step task with the scripted experts, narrate it and save an mp4."""
    _check_writable("--out", out_dir)
    from embodia.body.env import TabletopEnv
    from embodia.eval.rollout import ExpertAgent
    from embodia.eval.video import write_mp4

    try:
        env = TabletopEnv(embodiment=embodiment, task=task, cameras=())
    except ValueError as e:
        _fail(str(e))
    try:
        obs, _ = env.reset(seed=seed)
        out.print(f"[bold]embodia demo[/]: task [cyan]{task}[/] on [cyan]{embodiment}[/], seed {seed}")
        out.print(f"scene: {env.scene_graph().summary()}")
        for i, (s, a) in enumerate(env.plan):
            out.print(f"  step {i + 1}: {s}({', '.join(a)})  \"{env.instructions[i]}\"")
        agent = ExpertAgent()
        agent.reset(env, seed)
        frames, log, prev = [env.render()], [], 0
        steps_at = []
        while True:
            obs, _, term, trunc, info = env.step(agent.act(obs, env))
            frames.append(env.render())
            while prev < info["step_index"]:
                steps_at.append(info["elapsed_steps"])
                out.print(f"  [green]done[/] step {prev + 1} ({env.plan[prev][0]}) at control step {info['elapsed_steps']}")
                prev += 1
            if term or trunc:
                break
        video = write_mp4(out_dir / f"{task}_seed{seed}.mp4", frames, env.embodiment.control_rate_hz)
        log = {"task": task, "seed": seed, "success": bool(info["success"]),
               "steps_completed": info["step_index"], "steps_total": len(env.plan),
               "control_steps": info["elapsed_steps"], "video": str(video),
               "final_scene": env.scene_graph().summary()}
        (out_dir / "summary.json").write_text(json.dumps(log, indent=2))
        verdict = "[bold green]SUCCESS[/]" if info["success"] else "[bold red]FAILED[/]"
        out.print(f"{verdict}: {info['step_index']}/{len(env.plan)} steps in {info['elapsed_steps']} control steps "
                  f"({info['elapsed_steps'] / env.embodiment.control_rate_hz:.1f} s simulated)")
        out.print(f"final scene: {log['final_scene']}")
        out.print(f"video: {video}")
        if not info["success"]:
            raise typer.Exit(1)
    finally:
        env.close()


def parse_data_weights(text: str | None) -> dict[str, float] | None:
    """'DIR=W,DIR=W' -> {DIR: W}; a malformed entry is refused, naming it."""
    if not text:
        return None
    out: dict[str, float] = {}
    for item in (i.strip() for i in text.split(",") if i.strip()):
        folder, sep, weight = item.rpartition("=")
        try:
            if not (sep and folder):
                raise ValueError
            out[folder] = float(weight)
        except ValueError:
            raise ValueError(f"--data-weight entry {item!r} is not DIR=WEIGHT (e.g. datasets/recover_arm7_pick=4)") \
                from None
    return out


def parse_head_options(text: str | None) -> dict:
    """KEY=VALUE[,KEY=VALUE]: values read as JSON (numbers, true/false, lists), else strings."""
    opts: dict = {}
    for part in (text or "").split(","):
        if not part:
            continue
        key, eq, value = part.partition("=")
        if not eq or not key:
            raise ValueError(f"--head-option: {part!r} is not KEY=VALUE")
        try:
            opts[key] = json.loads(value)
        except json.JSONDecodeError:
            opts[key] = value
    return opts


def _train_general(data: str, out: Path, head: str, head_option: str | None, cameras: str | None, encoder: str,
                   encoder_width: int, keypoints: int, d_model: int, backbone_layers: int, head_layers: int,
                   horizon: int, n_action_steps: int, temporal_ensemble: float | None, env_state_aux: float,
                   dropout: float, batch_size: int, lr: float, weight_decay: float, max_steps: int,
                   max_minutes: float, seed: int, threads: int | None, device: str, ema: float | None,
                   precision: str, as_json: bool) -> None:
    """`embodia train` without a preset: the general core on any LeRobot-v3 datasets."""
    from embodia.cerebellum.general_training import GeneralTrainConfig, train_general

    try:
        cfg = GeneralTrainConfig(
            data=[d for d in data.split(",") if d], out=str(out), head=head, head_options=parse_head_options(head_option),
            cameras=[c for c in cameras.split(",") if c] if cameras else None, encoder=encoder,
            encoder_width=encoder_width, keypoints=keypoints, d_model=d_model, backbone_layers=backbone_layers,
            head_layers=head_layers, horizon=horizon, n_action_steps=n_action_steps,
            temporal_ensemble=temporal_ensemble, env_state_aux=env_state_aux, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, max_steps=max_steps, max_minutes=max_minutes, seed=seed, threads=threads,
            device=device, ema_decay=ema, precision=precision)
        if dropout:
            raise ValueError("--dropout belongs to --preset object-centric (the general core's heads take "
                             "--head-option dropout=P)")
        with Progress(TextColumn("train {task.fields[info]}"), BarColumn(), TimeElapsedColumn(), console=err) as bar:
            t = bar.add_task("", total=max_minutes * 60, info="")
            start = time.perf_counter()

            def progress(log: dict) -> None:
                bar.update(t, completed=time.perf_counter() - start,
                           info=f"step {log['step']} loss {log['loss']:.4f} {log['samples_per_s']:.0f} samples/s")

            summary = train_general(cfg, progress=progress)
    except (FileNotFoundError, ValueError, KeyError, ImportError) as e:
        _fail(str(e))
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        err.print("trained: " + ", ".join(f"{k}={v}" for k, v in summary.items()))


@app.command()
def train(
    data: Annotated[str, typer.Option(help="dataset folder(s), comma-separated")],
    out: Annotated[Path, typer.Option(help="checkpoint folder (resumed if it exists)")],
    head: Annotated[str, typer.Option(help="the general core: flow | tokens | act | diffusion | l1; "
                                           "--preset object-centric: flow | tokens")] = "flow",
    preset: Annotated[str | None, typer.Option(
        help="object-centric: the shipped arm7 policy (object-state estimator; needs "
             "observation.environment_state). Default: the general core, any LeRobot-v3 dataset")] = None,
    encoder: Annotated[str, typer.Option(help="general core: resnet (ResNet-18, GroupNorm, spatial softmax) | vit")
                       ] = "resnet",
    encoder_width: Annotated[int, typer.Option(min=1, help="general core: the ResNet's first-stage channels")] = 16,
    keypoints: Annotated[int, typer.Option(min=1, help="general core: spatial-softmax keypoints per camera")] = 16,
    backbone_layers: Annotated[int, typer.Option(min=1, help="general core: transformer layers over the tokens")] = 2,
    head_layers: Annotated[int, typer.Option(min=1, help="general core: the head's decoder layers")] = 2,
    n_action_steps: Annotated[int, typer.Option(min=1, help="general core: actions executed per chunk")] = 8,
    temporal_ensemble: Annotated[float | None, typer.Option(
        min=0.0, help="general core: ACT's temporal ensembling weight k (default: receding horizon)")] = None,
    head_option: Annotated[str | None, typer.Option(
        help="general core: KEY=VALUE[,KEY=VALUE] head options (JSON values), e.g. steps=10,prior=false")] = None,
    env_state_aux: Annotated[float, typer.Option(
        min=0.0, help="general core: weight of the auxiliary observation.environment_state regression "
                      "(training only; used when every dataset records it)")] = 0.1,
    max_minutes: Annotated[float, typer.Option(min=0.1)] = 45.0,
    max_steps: Annotated[int, typer.Option(min=1)] = 100_000,
    batch_size: Annotated[int, typer.Option(min=1)] = 64,
    lr: float = 3e-4,
    weight_decay: Annotated[float, typer.Option(min=0.0, help="AdamW's decoupled weight decay")] = 1e-4,
    seed: int = 0,
    d_model: int = 128,
    dropout: Annotated[float, typer.Option(
        min=0.0, max=0.9, help="dropout in the transformer blocks of the prefix and the head (the estimator has none)")
    ] = 0.0,
    drop_path: Annotated[float, typer.Option(
        min=0.0, max=0.9, help="stochastic depth: the share of training samples for which each residual branch "
                               "of the prefix and the head is skipped")] = 0.0,
    horizon: int = 16,
    cameras: Annotated[str | None, typer.Option(
        help="camera names, comma-separated (default: every camera of the data; the object-centric preset: "
             "front,wrist)")] = None,
    env_state_input: Annotated[str, typer.Option(
        help="object-state token: estimated (learned from the cameras) | privileged (simulator truth, "
             "analysis only) | none")] = "estimated",
    image_tokens: Annotated[bool, typer.Option(help="camera tokens in the prefix besides the estimate")] = False,
    env_state_noise: Annotated[float, typer.Option(
        min=0.0, help="training noise on the true object state the action head reads (normalized units; "
                      "0.1 is about the estimator's median error)")] = 0.1,
    flow_prior: Annotated[bool, typer.Option(
        help="flow head: start integration from a regressed chunk plus noise (not pure noise)")] = True,
    lang_tokens: Annotated[int, typer.Option(
        min=0, help="instruction word pieces that object relevance is measured on (0: sentence vector)")] = 24,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: all cores)")] = None,
    parallel_parts: Annotated[bool | None, typer.Option(
        "--parallel-parts/--joint",
        help="train the object estimator (one core, a child process) and the action part (the other "
             "cores, state-only batches) at once, then graft them into one checkpoint; default: "
             "wherever the config allows it (an estimated object state, no camera tokens, no HF tower)")] = None,
    action_members: Annotated[int, typer.Option(
        min=1, help="with --parallel-parts: train this many action parts one after another (equal slices of "
                    "the budget) beside the one estimator; --out becomes an ensemble of them")] = 1,
    estimator_data: Annotated[str | None, typer.Option(
        help="comma-separated subset of --data whose camera frames the object estimator trains on "
             "(default: all; the action part always uses all)")] = None,
    balance_skills: Annotated[bool, typer.Option(
        help="sample every skill equally often, whatever its share of the frames")] = False,
    data_weight: Annotated[str | None, typer.Option(
        help="DIR=W[,DIR=W...]: draw that --data folder's frames W times as often as its share of the "
             "frames gives (default 1 each)")] = None,
    ema: Annotated[float | None, typer.Option(
        help="ship an exponential moving average of the weights with this decay per step (e.g. 0.999)")] = None,
    flow_temperature: Annotated[float, typer.Option(
        min=0.0, help="inference setting written to config.json: scale of the flow's sampling noise "
                      "(the shipped checkpoints: 0)")] = 1.0,
    occlusion_hold: Annotated[bool, typer.Option(
        help="inference setting written to config.json: objects the hand hides keep their last seen "
             "position (needs --env-state-input estimated)")] = False,
    instruction_retrieval: Annotated[bool, typer.Option(
        help="inference setting written to config.json: act on the nearest training instruction that "
             "names the same objects")] = False,
    hf_backbone: Annotated[Path | None, typer.Option(
        help="local Hugging Face VLM folder (SigLIP/CLIP-style) whose vision tower replaces the CNN")] = None,
    finetune_hf_backbone: Annotated[bool, typer.Option(help="train the HF vision tower too (default: frozen)")] = False,
    device: Annotated[str, typer.Option(help="auto (CUDA when present, else CPU) | cpu | cuda | cuda:N")] = "auto",
    precision: Annotated[str, typer.Option(
        help="fp32 | bf16 (bfloat16 autocast: ~2x on CPUs with AVX512-BF16 or AMX, slower without)")] = "fp32",
    compile_loss: Annotated[bool, typer.Option("--compile", help="torch.compile the action loss (~1 min to compile)")
                            ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Train a language-conditioned VLA policy from datasets (CUDA when present, else the CPU)."""
    if preset not in (None, "object-centric"):
        _fail(f"unknown preset {preset!r}; the presets are: object-centric")
    if preset is None:
        preset_only = {"--parallel-parts/--joint": parallel_parts is not None, "--estimator-data": estimator_data,
                       "--hf-backbone": hf_backbone, "--occlusion-hold": occlusion_hold,
                       "--instruction-retrieval": instruction_retrieval, "--action-members": action_members != 1,
                       "--balance-skills": balance_skills, "--data-weight": data_weight, "--compile": compile_loss}
        given = [k for k, v in preset_only.items() if v]
        if given:
            _fail(f"{', '.join(given)} belong to --preset object-centric; the general core does not take them")
        _train_general(data, out, head, head_option, cameras, encoder, encoder_width, keypoints, d_model,
                       backbone_layers, head_layers, horizon, n_action_steps, temporal_ensemble, env_state_aux,
                       dropout, batch_size, lr, weight_decay, max_steps, max_minutes, seed, threads, device, ema,
                       precision, as_json)
        return
    cameras = cameras or "front,wrist"
    from embodia.cerebellum.config import PolicyConfig
    from embodia.cerebellum.training import TrainConfig, TrainingPartFailed
    from embodia.cerebellum.training import train as run_train
    from embodia.data.metadata import DatasetMeta

    dirs = [d for d in data.split(",") if d]
    try:
        meta = DatasetMeta.load(dirs[0])
        feats = meta.features
        cams = [c for c in cameras.split(",") if c]
        pc = PolicyConfig(head=head, embodiment=meta.embodiment, cameras=cams,
                          image_size=feats[f"observation.images.{cams[0]}"]["shape"][0]
                          if cams and f"observation.images.{cams[0]}" in feats else 96,
                          env_state_input=env_state_input, image_tokens=image_tokens, lang_tokens=lang_tokens,
                          env_state_noise=env_state_noise, flow_prior=flow_prior,
                          state_dim=feats["observation.state"]["shape"][0],
                          action_dim=feats["action"]["shape"][0] if "action" in feats else 0,
                          horizon=horizon, d_model=d_model, dropout=dropout, drop_path=drop_path, control_rate_hz=float(meta.fps),
                          hf_backbone=str(hf_backbone.expanduser().resolve()) if hf_backbone else None,
                          freeze_hf_backbone=not finetune_hf_backbone, flow_temperature=flow_temperature,
                          occlusion_hold=occlusion_hold, instruction_retrieval=instruction_retrieval)
        cfg = TrainConfig(data=dirs, out=str(out), policy=pc, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                          max_steps=max_steps, max_minutes=max_minutes, seed=seed, threads=threads,
                          estimator_data=[d for d in estimator_data.split(",") if d] if estimator_data else None,
                          balance_skills=balance_skills, data_weights=parse_data_weights(data_weight),
                          ema_decay=ema, device=device,
                          action_members=action_members, precision=precision, compile=compile_loss,
                          parallel_parts=(env_state_input == "estimated" and not image_tokens
                                          and hf_backbone is None if parallel_parts is None else parallel_parts))
        with Progress(TextColumn("train {task.fields[info]}"), BarColumn(), TimeElapsedColumn(),
                      console=err) as bar:
            t = bar.add_task("", total=max_minutes * 60, info="")

            start = time.perf_counter()

            def progress(log: dict) -> None:
                v = log.get("val_loss")
                bar.update(t, completed=time.perf_counter() - start,
                           info=f"step {log['step']} loss {log['loss']:.4f}"
                                + (f" val {v:.4f}" if v is not None else "")
                                + f" {log['samples_per_s']:.0f} samples/s")

            summary = run_train(cfg, progress=progress)
    except (FileNotFoundError, ValueError, KeyError, TrainingPartFailed) as e:
        _fail(str(e))
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        out_msg = ", ".join(f"{k}={v}" for k, v in summary.items())
        err.print(f"trained: {out_msg}")


@app.command()
def collect(
    out: Annotated[Path, typer.Option(help="dataset folder (created, or resumed)")],
    suite: Annotated[str | None, typer.Option(
        help="an external benchmark (metaworld): its scripted experts; --task is its task or "
             "'mt10', --episodes counts per task")] = None,
    embodiment: str = "arm7",
    skill: Annotated[str, typer.Option(help="the meta-skill to record")] = "pick",
    task: Annotated[str | None, typer.Option(
        help="a multi-step task instead: the experts chain its steps, each step is stored as "
             "an episode of its skill")] = None,
    arm: Annotated[str | None, typer.Option(help="which arm acts (humanoid: left | right)")] = None,
    episodes: Annotated[int, typer.Option(
        min=1, help="episodes the dataset should hold for this skill (a task: seeds)")] = 10,
    seed_start: Annotated[int, typer.Option(min=0)] = 0,
    workers: Annotated[int, typer.Option(min=1)] = 1,
    cameras: Annotated[str | None, typer.Option(
        help="comma-separated; default all; 'none' records state and actions only (~6x faster: "
             "data for the action part, which reads no camera)")] = None,
    image_size: Annotated[int | None, typer.Option(min=16, max=512, help="default 96 (a suite: 84)")] = None,
    tier: Annotated[str, typer.Option(help="real | synthetic | human")] = "synthetic",
    keep_failures: Annotated[bool, typer.Option(help="also keep episodes that failed")] = False,
    perturb: Annotated[float, typer.Option(
        min=0.0, max=0.05, help="DART-style: up to this much Gaussian noise (m) on each executed "
                                "move; the expert's own action is recorded")] = 0.0,
    slip: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="share of episodes where the cube slips out of the closing fingers "
                               "during a pick, so the expert's re-grasp is recorded")] = 0.0,
    recover_from: Annotated[str | None, typer.Option(
        help="a checkpoint that acts first; once it misses, the expert takes over and only the "
             "expert's recovery is recorded (pick: a close on air; stack: a release beside the base; DAgger-style). With --task: the policy does "
             "the steps before the first place/stack, the expert that step, from the policy's grasp")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Record scripted-expert episodes into a LeRobot-v3 dataset (resumable, parallel)."""
    if suite is not None:
        if perturb or slip or recover_from is not None:
            _fail("--suite records the suite's own experts: --perturb, --slip and --recover-from do not apply")
        _collect_suite(suite, task, out, episodes, seed_start, workers, camera_names(cameras), image_size,
                       tier, keep_failures, as_json)
        return
    image_size = 96 if image_size is None else image_size
    from embodia.data.recording import CollectConfig
    from embodia.data.recording import collect as run_collect

    t0 = time.perf_counter()
    try:
        cfg = CollectConfig(out=out, embodiment=embodiment, skill=skill, task=task, arm=arm,
                            episodes=episodes, seed_start=seed_start, workers=workers,
                            cameras=camera_names(cameras), image_size=image_size, tier=tier, keep_failures=keep_failures,
                            perturb=perturb, slip=slip)
        if recover_from is not None:  # policy-in-the-loop lives above the cerebellum, not in data/
            from embodia.eval.recovery.collect import check_recovery, collect_recovery

            check_recovery(cfg, recover_from)
        with Progress(TextColumn(f"collect {cfg.name}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=err) as bar:
            task = bar.add_task("", total=episodes)

            def shown(done: int, total: int) -> None:
                bar.update(task, completed=done)

            if recover_from is not None:
                report = collect_recovery(cfg, recover_from, progress=shown)
            else:
                report = run_collect(cfg, progress=shown)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: finished episodes are saved; run the same command to resume")
        raise typer.Exit(130) from None
    elapsed = time.perf_counter() - t0
    summary = {"out": str(out), "recorded": report.recorded, "already_present": report.already_present,
               "failed_skipped": report.failed_skipped, "frames": report.frames,
               "seconds": round(elapsed, 2),
               "frames_per_s": round(report.frames / elapsed, 1) if elapsed > 0 else None}
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        err.print(f"recorded {report.recorded} episodes ({report.frames} frames, "
                  f"{summary['frames_per_s']} frames/s); {report.already_present} were already there; "
                  f"{report.failed_skipped} failed episodes skipped")


data_app = typer.Typer(no_args_is_help=True, help="Inspect, validate and plot datasets.")
app.add_typer(data_app, name="data")


@data_app.command("info")
def data_info(root: Path, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Episodes, frames, tiers, embodiments and tasks of a dataset."""
    from embodia.data.metadata import DatasetMeta

    try:
        s = DatasetMeta.load(root).summary()
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if as_json:
        print(json.dumps(s, indent=2))
        return
    out.print(f"[bold]{root}[/]: {s['episodes']} episodes, {s['frames']} frames at {s['fps']} fps")
    out.print(f"tiers {s['tiers']}  embodiments {s['embodiments']}  skills {s['skills']}")
    out.print(f"cameras {s['cameras']}  actions: {s['has_actions']}  tasks: {s['tasks']}")


@data_app.command("validate")
def data_validate(root: Path, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Check every file; corrupt or missing ones are named. Exit code 1 if any problem."""
    from embodia.data.validate import validate_dataset

    rep = validate_dataset(root)
    if as_json:
        print(json.dumps({"root": rep.root, "ok": rep.ok, "checked_files": rep.checked_files,
                          "problems": rep.problems}, indent=2))
    elif rep.ok:
        out.print(f"[green]ok[/]: {rep.checked_files} files checked in {root}")
    else:
        for p in rep.problems:
            out.print(f"[red]problem[/]: {p}")
    if not rep.ok:
        raise typer.Exit(1)


@data_app.command("viz")
def data_viz(root: Path, episode: Annotated[int, typer.Option(min=0)] = 0,
             out_file: Annotated[Path, typer.Option("--out")] = Path("episode.png")) -> None:
    """A frame strip plus action and state plots of one episode, as a PNG."""
    from embodia.data.viz import plot_episode

    try:
        path = plot_episode(root, episode, out_file)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    out.print(f"wrote {path}")


serve_app = typer.Typer(no_args_is_help=True, help="Serve a policy to robots over the network.")
app.add_typer(serve_app, name="serve")


@serve_app.command("policy")
def serve_policy(
    checkpoint: Annotated[Path, typer.Option(help="checkpoint folder (model.safetensors, config.json, stats.json)")],
    host: Annotated[str, typer.Option(help="bind address (loopback by default; the API key guards any other)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port (printed)")] = 8000,
    api_key_file: Annotated[Path | None, typer.Option(help="file holding the API key; default $EMBODIA_API_KEY")] = None,
    max_batch: Annotated[int, typer.Option(min=1, help="most requests from different robots per model call")] = 32,
    batch_window_ms: Annotated[float, typer.Option(min=0, help="longest a request waits for company")] = 2.0,
    max_message_mb: Annotated[float, typer.Option(min=0.01, help="larger messages get a too_large error")] = 4.0,
) -> None:
    """Serve a checkpoint over websocket + msgpack (openpi-client compatible); /healthz and
    /metrics over HTTP on the same port. Clients send `Authorization: Api-Key <key>`."""
    import logging

    from embodia.serve.auth import ENV_VAR, ApiKeyAuth, load_api_key
    from embodia.serve.batching import BatchingConfig
    from embodia.serve.server import LOOPBACK, ServerConfig, run_policy_server

    try:
        key = load_api_key(api_key_file)
        if key is None:
            raise ValueError(f"no API key: set {ENV_VAR} or pass --api-key-file")
        ApiKeyAuth(key)
    except ValueError as e:
        _fail(str(e))
    from embodia.cerebellum.checkpoint import load_checkpoint

    try:
        policy = load_checkpoint(checkpoint)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if host not in LOOPBACK:
        err.print(f"[yellow]warning:[/] listening on {host}, beyond this machine; only the API key guards it")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)
    config = ServerConfig(host=host, port=port, max_message_bytes=int(max_message_mb * 2**20),
                          batching=BatchingConfig(max_batch=max_batch, window_s=batch_window_ms / 1e3))
    err.print(f"loading {checkpoint} ({policy.cfg.embodiment}, {policy.cfg.head} head) and warming up ...")
    run_policy_server(policy, key, config)


@serve_app.command("brain")
def serve_brain(
    planner: Annotated[str, typer.Option(help="symbolic (offline) | llm")] = "symbolic",
    embodiment: str = "arm7",
    arm: Annotated[str | None, typer.Option(help="preferred arm (humanoid: left | right)")] = None,
    host: Annotated[str, typer.Option(help="bind address (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8001,
    api_key_file: Annotated[Path | None, typer.Option(help="file holding the API key; default $EMBODIA_API_KEY")] = None,
    base_url: Annotated[str | None, typer.Option(help="llm: OpenAI-compatible endpoint")] = None,
    model: Annotated[str | None, typer.Option(help="llm: model name at the endpoint")] = None,
    llm_api_key_env: Annotated[str, typer.Option(help="llm: environment variable holding the LLM key")] = "EMBODIA_LLM_API_KEY",
    accept_unverified: Annotated[bool, typer.Option("--accept-unverified", help="llm: serve plans for wording the grammar cannot check (default: refuse them)")] = False,
    plan_timeout_s: Annotated[float, typer.Option(min=0.1, help="a request without a plan by then gets 504")] = 30.0,
    max_pending: Annotated[int, typer.Option(min=0, help="requests waiting behind the one being planned; more get 503")] = 4,
) -> None:
    """Serve the brain over HTTP: POST /plan {instruction, scene} -> plan JSON (422 = refusal or
    invalid field, 413 too large, 503 busy, 504 too slow; see docs/serve.md)."""
    import logging

    from embodia.brain.planner import make_planner
    from embodia.serve.auth import ENV_VAR, ApiKeyAuth, load_api_key
    from embodia.serve.brain_service import BrainService, BrainServiceConfig

    try:
        key = load_api_key(api_key_file)
        if key is None:
            raise ValueError(f"no API key: set {ENV_VAR} or pass --api-key-file")
        ApiKeyAuth(key)
        options = {"base_url": base_url, "model": model, "api_key_env": llm_api_key_env,
                   "accept_unverified": accept_unverified} if planner == "llm" else {}
        brain = make_planner(planner, embodiment, arm, **options)
        service = BrainService(brain, key, BrainServiceConfig(host=host, port=port, plan_timeout_s=plan_timeout_s,
                                                              max_pending=max_pending))
    except (ValueError, OSError) as e:
        _fail(str(e))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    err.print(f"brain ({planner}, {embodiment}) on {service.url}")
    if accept_unverified and planner == "llm":
        err.print("[yellow]warning:[/] --accept-unverified: plans the grammar cannot check are served unchecked")
    try:
        service.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        service.close()


fleet_app = typer.Typer(no_args_is_help=True, help="The fleet service: robots, skill versions, uploaded data.")
app.add_typer(fleet_app, name="fleet")
token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens for the fleet service.")
fleet_app.add_typer(token_app, name="token")
FleetDb = Annotated[str, typer.Option("--db", help="SQLAlchemy URL (sqlite:///fleet.db, postgresql://user@host/db)")]


@fleet_app.command("serve")
def fleet_serve(
    db: FleetDb = "sqlite:///fleet.db",
    host: Annotated[str, typer.Option(help="bind address (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8002,
    data_dir: Annotated[Path, typer.Option(help="where uploaded episodes are kept")] = Path("fleet_data"),
    ray_address: Annotated[str | None, typer.Option(help="run jobs on this Ray cluster (default: a local instance)")] = None,
    no_jobs: Annotated[bool, typer.Option("--no-jobs", help="record jobs but run none here")] = False,
) -> None:
    """Serve the fleet REST API under /api (OpenAPI at /openapi.json; see docs/fleet.md)."""
    import uvicorn

    from embodia.serve.fleet.app import FleetConfig, create_app

    try:
        fleet = create_app(FleetConfig(db=db, data_dir=str(data_dir), ray_address=ray_address, run_jobs=not no_jobs))
    except Exception as e:  # an unreachable database or a bad URL: one line, exit 2
        _fail(f"--db {db}: {e}")
    err.print(f"fleet service on http://{host}:{port} (db {db.split('@')[-1]})")
    uvicorn.run(fleet, host=host, port=port, log_level="warning")


@fleet_app.command("robot")
def fleet_robot(
    server: Annotated[str, typer.Option(help="the fleet service, http://HOST:PORT")],
    token_file: Annotated[Path, typer.Option(help="a file holding a robot token (fleet token create --role robot)")],
    embodiment: Annotated[str, typer.Option(help="arm7 | humanoid_upper")] = "arm7",
    name: Annotated[str, typer.Option(help="the robot's name on the dashboard")] = "robot",
    site: Annotated[str, typer.Option(help="robots of one site share a scene memory")] = "default",
    spool: Annotated[Path, typer.Option(help="outbox, downloaded skills and recordings in progress")] = Path("robot_spool"),
    cameras: Annotated[str | None, typer.Option(help="recorded cameras, comma-separated, or 'none' (default: all)")] = None,
    image_size: Annotated[int, typer.Option(min=16, max=512)] = 96,
    tier: Annotated[str, typer.Option(help="real | synthetic | human (a simulated robot: synthetic)")] = "synthetic",
    heartbeat_s: Annotated[float, typer.Option(min=0.05, help="seconds between heartbeats")] = 1.0,
    poll_s: Annotated[float, typer.Option(min=0.05, help="seconds between asks for work when idle")] = 2.0,
    max_tasks: Annotated[int | None, typer.Option(min=1, help="exit after this many tasks are done and sent")] = None,
) -> None:
    """A simulated robot: register, heartbeat, run the assigned skill version on the tasks an
    operator queues, upload the episodes (resumably; kept in the outbox while offline)."""
    import logging
    import signal

    from embodia.body.embodiments import list_embodiments
    from embodia.serve.fleet.models import TIERS
    from embodia.serve.fleet.robot import FleetRobot, RobotConfig

    if embodiment not in list_embodiments():
        _fail(f"--embodiment must be one of {list_embodiments()}, got {embodiment!r}")
    if tier not in TIERS:
        _fail(f"--tier must be one of {list(TIERS)}, got {tier!r}")
    try:
        token = token_file.read_text().strip().splitlines()[-1].strip()
    except (OSError, IndexError) as e:
        _fail(f"--token-file {token_file}: {e if isinstance(e, OSError) else 'the file is empty'}")
    _check_writable("--spool", spool)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per request otherwise
    robot = FleetRobot(RobotConfig(server=server, token=token, embodiment=embodiment, name=name, site=site,
                                   spool=spool, cameras=camera_names(cameras), image_size=image_size, tier=tier,
                                   heartbeat_s=heartbeat_s, poll_s=poll_s, max_tasks=max_tasks))
    signal.signal(signal.SIGTERM, lambda *_: robot.stop())
    try:
        done = robot.run()
    except KeyboardInterrupt:
        robot.stop()
        done = robot.done
    except Exception as e:  # a refusal the robot cannot work around (a revoked token, say)
        _fail(str(e))
    err.print(f"{name}: {done} tasks done")


@token_app.command("create")
def fleet_token_create(
    role: Annotated[str, typer.Option(help="robot | operator | viewer")],
    db: FleetDb = "sqlite:///fleet.db",
) -> None:
    """Create a token of ROLE; it is printed once, on the last line, and stored only as a hash."""
    from embodia.serve.fleet.database import open_database
    from embodia.serve.fleet.models import ROLES
    from embodia.serve.fleet.tokens import create_token

    if role not in ROLES:  # before the database is opened (or created)
        _fail(f"--role must be one of {list(ROLES)}, got {role!r}")
    try:
        sessions = open_database(db)
        with sessions() as s:
            token = create_token(s, role)
    except ValueError as e:
        _fail(str(e))
    except Exception as e:
        _fail(f"--db {db}: {e}")
    err.print(f"new {role} token (shown once; send it as 'Authorization: Bearer <token>'):")
    print(token)


@app.command()
def embodiments(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List the embodiments with their state/action layouts."""
    from embodia.body.embodiments import get_embodiment, list_embodiments

    specs = [get_embodiment(n).to_dict() for n in list_embodiments()]
    if as_json:
        print(json.dumps(specs, indent=2))
        return
    for s in specs:
        out.print(f"[bold]{s['name']}[/]: arms {s['arms']}, cameras {s['cameras']}, "
                  f"{s['control_rate_hz']} Hz, state {len(s['state_names'])}, "
                  + ", ".join(f"{k} {len(v['names'])}" for k, v in s["action_spaces"].items()))


@app.command()
def scene(
    seed: Annotated[int, typer.Option(min=0, help="the seeded reset (gymnasium seeds are >= 0)")] = 0,
    skill: str = "pick",
    embodiment: str = "arm7",
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Print the scene graph of a seeded reset."""
    g, instruction = _seeded_scene(embodiment, skill, seed)
    if as_json:
        print(json.dumps({"instruction": instruction, **g.to_dict()}, indent=2))
    else:
        out.print(f"instruction: {instruction}\n{g.summary()}")


def _seeded_scene(embodiment: str, skill: str, seed: int):
    """The scene graph (and first instruction) of a seeded reset, without cameras."""
    from embodia.body.env import TabletopEnv

    try:
        env = TabletopEnv(embodiment=embodiment, skill=skill, cameras=())
    except ValueError as e:
        _fail(str(e))
    try:
        env.reset(seed=seed)
        return env.scene_graph(), env.instruction
    finally:
        env.close()


def _confirm_unverified_on_terminal(plan: Plan) -> bool:
    """Shows a plan the grammar could not check and asks the person (stderr; no = refuse)."""
    err.print(f"[bold yellow]unverified plan[/] for \"{plan.instruction}\" (its goals could not be checked):")
    for i, s in enumerate(plan.steps, 1):
        err.print(f"  {i}. {s.skill}({', '.join(s.args)}) \\[{s.arm} arm]  \"{s.instruction}\"")
    try:
        return typer.confirm("Accept this plan?", default=False, err=True)
    except typer.Abort:  # no terminal input (EOF)
        return False


def _plan_asking(brain, instruction: str, graph, ask: bool):
    """Plan; on an ambiguous phrase with readings and `ask`, ask which one (stderr) and plan the
    clarified instruction. Returns (plan, the instruction as clarified)."""
    from embodia.brain.refusal import Refusal

    for _ in range(5):  # one question per ambiguous phrase
        try:
            return brain.plan(instruction, graph), instruction
        except Refusal as r:
            if not (ask and r.needs_clarification):
                raise
            err.print(f"[bold yellow]which one?[/] '{r.phrase}' could be:")
            for i, reading in enumerate(r.readings, 1):
                err.print(f"  {i}. the {reading}")
            try:
                k = typer.prompt(f"number (1-{len(r.readings)})", type=int, err=True)
                while not 1 <= k <= len(r.readings):
                    k = typer.prompt(f"a number from 1 to {len(r.readings)}", type=int, err=True)
            except typer.Abort:  # no terminal input (EOF): the refusal stands
                raise r from None
            instruction = r.clarified(instruction, r.readings[k - 1])
            err.print(f"[dim]planning: {instruction}[/]")
    return brain.plan(instruction, graph), instruction


@dataclass
class _AskingBrain:
    """A planner that asks the person (stderr) which object an ambiguous phrase means."""

    brain: Any

    @property
    def name(self) -> str:
        return self.brain.name

    def plan(self, instruction: str, scene):
        return _plan_asking(self.brain, instruction, scene, ask=True)[0]

    def replan(self, *args, **kwargs):
        return self.brain.replan(*args, **kwargs)


@app.command()
def plan(
    instruction: Annotated[str, typer.Argument(help="what the person asks, in plain English")],
    seed: Annotated[int, typer.Option(min=0, help="the seeded scene (as `embodia scene --seed`)")] = 0,
    planner: Annotated[str, typer.Option(help="symbolic (offline) | llm")] = "symbolic",
    embodiment: str = "arm7",
    arm: Annotated[str | None, typer.Option(help="preferred arm (humanoid: left | right)")] = None,
    skill: Annotated[str, typer.Option(help="the start state to draw (as in `embodia scene`)")] = "pick",
    base_url: Annotated[str | None, typer.Option(help="llm: OpenAI-compatible endpoint, e.g. http://localhost:8000/v1")] = None,
    model: Annotated[str | None, typer.Option(help="llm: model name at the endpoint")] = None,
    api_key_env: Annotated[str, typer.Option(help="llm: environment variable holding the API key")] = "EMBODIA_LLM_API_KEY",
    confirm_unverified: Annotated[bool, typer.Option("--confirm-unverified", help="llm: for wording the grammar cannot check, show the LLM's plan and ask before accepting it (default: refuse)")] = False,
    ask: Annotated[bool, typer.Option("--ask", help="when a phrase could mean several objects, list them and ask which (stderr) instead of refusing")] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Plan an instruction on a seeded scene: print the scene summary and the plan (or why not).

    An ambiguous refusal lists its candidate `readings` (in --json too); --ask asks for one.

    Exit code 1 when the brain refuses (unknown or ambiguous objects, impossible or infeasible
    requests), 2 on bad options.
    """
    from embodia.brain.llm import LLMError
    from embodia.brain.planner import make_planner
    from embodia.brain.refusal import Refusal

    options = {}
    if planner == "llm":
        if not base_url or not model:
            _fail("--planner llm needs --base-url and --model")
        options = {"base_url": base_url, "model": model, "api_key_env": api_key_env}
        if confirm_unverified:
            options["confirm"] = _confirm_unverified_on_terminal
    try:
        brain = make_planner(planner, embodiment, arm, **options)
    except ValueError as e:
        _fail(str(e))
    graph, _ = _seeded_scene(embodiment, skill, seed)
    scene_info = {"seed": seed, "embodiment": embodiment, "summary": graph.summary()}
    try:
        result, instruction = _plan_asking(brain, instruction, graph, ask)
    except Refusal as r:
        if as_json:
            print(json.dumps({"scene": scene_info, "refusal": r.to_dict()}, indent=2))
        else:
            out.print(f"scene: {graph.summary()}")
            out.print(f"[bold yellow]refused[/] ({r.kind}): {r}")
        raise typer.Exit(1) from None
    except LLMError as e:
        _fail(str(e))
    if as_json:
        print(json.dumps({"scene": scene_info, "plan": result.to_dict()}, indent=2))
        return
    out.print(f"scene: {graph.summary()}")
    out.print(f"[bold]plan[/] ({result.planner}, {result.planning_ms:.0f} ms) for \"{instruction}\":")
    for i, s in enumerate(result.steps, 1):
        out.print(f"  {i}. {s.skill}({', '.join(s.args)}) \\[{s.arm} arm]  \"{s.instruction}\"")
    if not result.steps:
        out.print("  (nothing to do: the goals already hold)")
    out.print("[dim]" + "\n".join(result.reasoning) + "[/]")


@app.command()
def run(
    instruction: Annotated[str, typer.Argument(help="what the person asks, in plain English")],
    seed: Annotated[int, typer.Option(min=0, help="the seeded scene (as `embodia scene --seed`)")] = 0,
    embodiment: str = "arm7",
    policy: Annotated[str | None, typer.Option(
        help="a checkpoint folder (relative to the current folder), or 'expert' (the scripted experts); "
             f"default: the shipped {DEFAULT_AGENT_CHECKPOINT}, found from any folder")] = None,
    realtime: Annotated[bool, typer.Option("--realtime", help="wall clock; the control loop in its own process")] = False,
    start: Annotated[str, typer.Option(help="the start state to draw (a skill, as in `embodia scene`)")] = "pick",
    control_hz: Annotated[float, typer.Option(min=100, max=1000, help="control layer rate")] = 500.0,
    rtc: Annotated[bool, typer.Option(help="flow head: continue each chunk from the committed actions")] = True,
    blend: Annotated[str, typer.Option(help="chunk boundaries: latest | ensemble | crossfade")] = "latest",
    execute: Annotated[int | None, typer.Option(min=1, help="actions run per chunk (default: the checkpoint's)")] = None,
    latency_ms: Annotated[float, typer.Option(min=0, help="lockstep: simulated inference latency")] = 0.0,
    video: Annotated[Path | None, typer.Option(help="write an mp4 of the run here")] = None,
    report: Annotated[Path | None, typer.Option(help="write an HTML report here")] = None,
    fallback_expert: Annotated[bool, typer.Option("--fallback-expert", help="if the checkpoint cannot be loaded, run the scripted experts (says so)")] = False,
    policy_url: Annotated[str | None, typer.Option(help="the cerebellum on a policy server (ws://HOST:PORT, key from $EMBODIA_API_KEY); overrides --policy")] = None,
    brain_url: Annotated[str | None, typer.Option(help="the brain on a brain service (http://HOST:PORT, key from $EMBODIA_API_KEY)")] = None,
    ask: Annotated[bool, typer.Option("--ask", help="when a phrase could mean several objects, list them and ask which (stderr) instead of refusing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON to stdout")] = False,
) -> None:
    """Plan an instruction with the brain, run each step with the cerebellum through the
    layered runtime, monitor and replan; report per-step outcomes and overall success.

    Exit code 0 on success, 1 when the task failed or the brain refused, 2 on bad options,
    3 when it succeeded on the scripted experts standing in for a checkpoint (--fallback-expert).
    """
    from embodia.brain.planner import make_planner
    from embodia.runtime import default_agent_checkpoint, project_root
    from embodia.runtime.agent import make_cerebellum, run_instruction
    from embodia.runtime.chunking import BlendConfig
    from embodia.runtime.control import ControlConfig
    from embodia.runtime.layers import RuntimeConfig

    asked = policy or DEFAULT_AGENT_CHECKPOINT  # as the person named it, for messages
    _check_writable("--video", video and video.parent)
    _check_writable("--report", report and report.parent)
    try:
        config = RuntimeConfig(control=ControlConfig(rate_hz=control_hz, blend=BlendConfig(blend)),
                               rtc=rtc, sim_latency_s=latency_ms / 1e3)
        if brain_url:
            from embodia.serve.auth import load_api_key
            from embodia.serve.brain_service import RemoteBrain

            brain = RemoteBrain(brain_url, load_api_key())
        else:
            brain = make_planner("symbolic", embodiment)
        if ask:
            brain = _AskingBrain(brain)
        if policy_url:
            from embodia.serve.remote_policy import RemoteChunkPolicy

            cerebellum, notices = RemoteChunkPolicy(policy_url, execute=execute), []
            if cerebellum.embodiment != embodiment:
                raise ValueError(f"the policy server drives {cerebellum.embodiment}, not --embodiment {embodiment}")
        else:
            if policy is None:  # the shipped default lives in the project, not the current folder
                try:
                    policy = str(default_agent_checkpoint())
                except FileNotFoundError:
                    if not fallback_expert:
                        raise
                    policy = str(project_root() / DEFAULT_AGENT_CHECKPOINT)
            if policy != "expert":
                err.print(f"loading {asked} ...")
            cerebellum, notices = make_cerebellum(policy, embodiment, rtc=rtc, execute=execute,
                                                  fallback_expert=fallback_expert)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        _fail(str(e))
    # Asked for a checkpoint, got the experts: every verdict and the exit code say so.
    fallback_from = asked if not policy_url and policy != "expert" and cerebellum.name == "expert" else None
    for n in notices:
        err.print(f"[bold yellow]notice:[/] {escape(n)}", soft_wrap=True)
    if not as_json:
        out.print(f"[bold]embodia run[/]: \"{instruction}\" on {embodiment}, seed {seed}, "
                  f"policy [cyan]{cerebellum.name}[/], {'real-time' if realtime else 'lockstep'} clock")
    try:
        rep = run_instruction(instruction, seed, brain, cerebellum, embodiment, start, config,
                              realtime, video, report, notices, fallback_from,
                              progress=lambda line: err.print(escape(line), soft_wrap=True))
    except (ValueError, RuntimeError) as e:
        _fail(str(e))
    result = rep.to_dict()
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        out.print(f"scene: {result['scene_before']}")
        if rep.refusal:
            out.print(f"[bold yellow]refused[/] ({rep.refusal['kind']}): {rep.refusal['message']}")
        else:
            out.print(f"[bold]plan[/] ({rep.plan.planner}, {rep.plan.planning_ms:.0f} ms):")
            for i, s in enumerate(rep.plan.steps, 1):
                out.print(f"  {i}. {s.skill}({', '.join(s.args)}) \\[{s.arm} arm]  \"{s.instruction}\"")
            for row in result["steps"]:
                mark = "[green]ok[/]" if row.get("effects_ok", row["success"]) else "[red]failed[/]"
                out.print(f"  {mark} {row['skill']}({', '.join(row['args'])}): {row['outcome']} after "
                          f"{row['duration_s']:.1f} s, {row['chunks']} chunks"
                          + (f"; {row['why']}" if row.get("why") and not row.get("effects_ok") else ""))
            verdict = f"[bold {'green' if rep.success else 'red'}]{escape(rep.verdict)}[/]"
            out.print(f"{verdict}: {result['message']} ({rep.retries} retries, {rep.replans} replans, "
                      f"{result['sim_s']:.1f} s robot time, {result['wall_s']:.1f} s wall)")
            out.print(f"final scene: {result['scene_after']}")
        for kind in ("video", "report"):
            if result[kind]:
                out.print(f"{kind}: {result[kind]}")
    if not rep.success:
        raise typer.Exit(1)
    if fallback_from:
        raise typer.Exit(3)


def main() -> None:  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # `python -m embodia.cli`, as the fleet's jobs run it
    main()
