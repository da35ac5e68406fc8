"""Skip frame and feeding at equal CPU time: which design makes SM-MNIST digits move?

Every arm is the 1-digit non-uniform CPU preset (``smmnist-1digit-cpu``, batch 8) with the decoder's
skip frame (``--skip-frame last|previous|none``) and what training feeds the recurrence after the
conditioning frames (``--feed true|own``) set, for SVG-LP and the deterministic model, two seeds
each. Arms run two at a time with one thread each (the 2-core machine); each trains for about
``MINUTES`` minutes: its steps come from its measured step cost (``STEP_SECONDS``). Each is then
evaluated as on docs/objectives.md (best-of-20 SSIM/PSNR, ELBO and IWAE-100, 64 test videos) and
by a final motion probe over 5 and 10 predicted steps of 64 test videos, which also scores the
teacher-forced one-step predictions per step.

    python experiments/motion_screen.py run [ARM ...] [--jobs 2] [--root runs/motion_screen]
    python experiments/motion_screen.py table [--root runs/motion_screen]
    python experiments/motion_screen.py figure --out samples.png [ARM ...] [--root runs/motion_screen]

Arms are named MODEL-SKIP-FEED-sSEED, e.g. ``lp-previous-true-s0`` (MODEL ``lp2``: SVG-LP on the
2-digit SM-MNIST of the shipped 2-digit models, ``smmnist-cpu`` at batch 8); FEED "ramp" is ``--feed own`` with
``--feed-ramp RAMP`` (scheduled sampling). A stopped ``run`` continues where it was (training resumes
exactly from the last checkpoint). Results: docs/motion_screen.md.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from objectives import EVALUATE, PROBE_HORIZONS, figure as draw_figure, final_probe
from recipe import PROBES_AVERAGED, last_probes, read_rows, step_minutes

COMMON = ["--sample-every", "250", "--checkpoint-every", "500"]
ONE_DIGIT = ["--preset", "smmnist-1digit-cpu", *COMMON]  # 1 digit, non-uniform velocities, batch 8
TWO_DIGITS = ["--preset", "smmnist-cpu", "--batch-size", "8", *COMMON]  # the paper's SM-MNIST, as shipped
MINUTES = 7
# seconds per step, one thread, two runs side by side on the 2-core machine (60-step runs; SVG-LP and
# det within 5% of each other)
STEP_SECONDS = {("last", "true"): 0.21, ("previous", "true"): 0.24, ("none", "true"): 0.16,
                ("last", "own"): 0.26, ("previous", "own"): 0.26, ("none", "own"): 0.20,
                ("previous", "ramp"): 0.26}
RAMP = 1000  # feed "ramp": the model's own prediction with a chance rising from 0 to 1 over these steps
MODELS = {"lp": ("svg-lp", ONE_DIGIT), "det": ("det", ONE_DIGIT)}
TWO_DIGIT_MODELS = {"lp2": ("svg-lp", TWO_DIGITS)}  # the 2-digit check of the 1-digit screen's leads
# the order they run in: the teacher-forced designs first, then feeding the model's own prediction
DESIGNS = [("last", "true"), ("previous", "true"), ("none", "true"), ("previous", "own"), ("none", "own"),
           ("previous", "ramp"), ("last", "own")]


def arm_name(model: str, skip: str, feed: str, seed: int) -> str:
    return f"{model}-{skip}-{feed}-s{seed}"


# the order they run in: both seeds of the first four designs, seed 0 of the next two, the 2-digit
# check of today's design against the lead, then the rest
ORDER = ([(MODELS, design, seed) for seed in (0, 1) for design in DESIGNS[:4]]
         + [(MODELS, design, 0) for design in DESIGNS[4:6]]
         + [(TWO_DIGIT_MODELS, design, 0) for design in (("last", "true"), ("none", "true"), ("previous", "own"),
                                                         ("none", "own"))]
         + [(MODELS, design, 1) for design in DESIGNS[4:6]]
         + [(TWO_DIGIT_MODELS, design, 1) for design in (("last", "true"), ("previous", "own"))]
         + [(MODELS, DESIGNS[6], seed) for seed in (0, 1)])
ARMS = {arm_name(model, skip, feed, seed): (*models[model], skip, feed, seed)
        for models, (skip, feed), seed in ORDER for model in models}


def steps(name: str, minutes: float = MINUTES) -> int:
    _, _, skip, feed, _ = ARMS[name]
    return max(50, round(minutes * 60 / STEP_SECONDS[skip, feed] / 50) * 50)


def flags(name: str, minutes: float = MINUTES) -> list[str]:
    model, base, skip, feed, seed = ARMS[name]
    feeding = ["--feed", "own", "--feed-ramp", str(RAMP)] if feed == "ramp" else ["--feed", feed]
    return [*base, "--model", model, "--skip-frame", skip, *feeding, "--seed", str(seed),
            "--steps", str(steps(name, minutes))]


def trained_steps(out: Path) -> int:
    rows = read_rows(out) if (out / "metrics.jsonl").exists() else []
    return rows[-1]["step"] if rows else 0


def run_arm(name: str, root: Path, minutes: float = MINUTES) -> None:
    """Train (or resume, exactly, a run that was stopped), evaluate and probe one arm; steps done are skipped."""
    out = root / name
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    commands = []
    if trained_steps(out) < steps(name, minutes):
        resume = ["--resume"] if (out / "checkpoint.pt").exists() else []
        commands.append(["svg-pyro", "train", *flags(name, minutes), "--out", str(out), "--no-progress", *resume])
    if not (out / "evaluate" / "metrics.json").exists():
        commands.append(["svg-pyro", "evaluate", "--checkpoint", str(out / "checkpoint.pt"), *EVALUATE,
                         "--out", str(out / "evaluate"), "--no-progress"])
    if not all((out / "evaluate" / f"probe-{h}.json").exists() for h in PROBE_HORIZONS):
        commands.append([sys.executable, __file__, "probe", name, "--root", str(root)])
    for command in commands:
        print(f"{name}: OMP_NUM_THREADS=1 {' '.join(command)}", flush=True)
        with open(root / f"{name}.log", "a") as log:
            subprocess.run(command, check=True, env=env, stdout=log, stderr=subprocess.STDOUT)
    print(f"{name}: done", flush=True)


def probe(name: str, root: Path) -> None:
    for horizon in PROBE_HORIZONS:
        path = root / name / "evaluate" / f"probe-{horizon}.json"
        if not path.exists():
            path.write_text(json.dumps(final_probe(root / name / "checkpoint.pt", horizon), indent=1))


def numbers(values, digits=1) -> str:
    return ", ".join("-" if v is None else f"{v:.{digits}f}" for v in values)


def table(root: Path) -> str:
    """One Markdown table per dataset (1 digit, 2 digits) of the arms evaluated so far."""
    done = [name for name in ARMS if (root / name / "evaluate" / "probe-10.json").exists()]
    if not done:
        raise SystemExit(f"no arm has been evaluated under {root}")
    groups = [[n for n in done if ARMS[n][1] is base] for base in (ONE_DIGIT, TWO_DIGITS)]
    return "\n\n".join(dataset_table(root, names) for names in groups if names)


def dataset_table(root: Path, done: list[str]) -> str:
    lines = ["| arm | steps | minutes | KL/step | certain-step error, 5 / 10 steps (px/frame) "
             "| best / mean position error, 10 steps (px) | one-step error from true frames, steps 1-10 (px/frame) "
             "| free-running displacement error, steps 1-10 (px/frame) | certain-step error, steps 1-5 (px/frame) "
             "| best-of-20 SSIM | best-of-20 PSNR | IWAE-100 (nats/frame) |", "| --- " * 12 + "|"]
    for name in done:
        rows = read_rows(root / name)
        pace = step_minutes(rows)
        probes, _ = last_probes(rows, float("inf"), pace)
        five, ten = (json.loads((root / name / "evaluate" / f"probe-{h}.json").read_text()) for h in PROBE_HORIZONS)
        svg = json.loads((root / name / "evaluate" / "metrics.json").read_text())["results"]["svg"]
        kl = sum(r["kl_per_step"] for r in probes) / len(probes)
        lines.append(
            f"| {name} | {rows[-1]['step']} | {rows[-1]['step'] * pace:.1f} | {kl:.2f} "
            f"| {five['certain_displacement_error']:.2f} / {ten['certain_displacement_error']:.2f} "
            f"| {ten['position_error_best']:.2f} / {ten['position_error_mean']:.2f} "
            f"| {numbers(ten['one_step_displacement_error_t'])} | {numbers(ten['displacement_error_t'])} "
            f"| {numbers(five['certain_displacement_error_t'], 2)} "
            f"| {svg['ssim']['best']['mean']:.4f} | {svg['psnr']['best']['mean']:.2f} "
            f"| {svg['bound']['iwae']['100']['per_frame']:.1f} |")
    lines += ["", f"KL/step: mean of the last {PROBES_AVERAGED} logged probes' rows. Motion columns: the final probe "
              "of the trained model (64 test videos x 5 samples); copy-last-frame scores "
              f"{five['copy_last_certain_displacement_error']:.2f} / {ten['copy_last_certain_displacement_error']:.2f} "
              f"px/frame on the certain steps and {ten['copy_last_position_error']:.2f} px position error."]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("run", "table", "figure", "probe"))
    p.add_argument("arms", nargs="*", help="arms (default all): MODEL-SKIP-FEED-sSEED")
    p.add_argument("--root", type=Path, default=Path("runs/motion_screen"))
    p.add_argument("--jobs", type=int, default=2, help="arms trained at a time, one thread each")
    p.add_argument("--out", type=Path, help="PNG written by figure")
    p.add_argument("--minutes", type=float, default=MINUTES, help="training minutes per arm (steps from the step cost)")
    args = p.parse_args(argv)
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    names = args.arms or list(ARMS)
    if args.action == "run":
        args.root.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            for future in [pool.submit(run_arm, name, args.root, args.minutes) for name in names]:
                future.result()
    elif args.action == "probe":
        for name in names:
            probe(name, args.root)
    elif args.action == "figure":
        draw_figure(args.root, args.out or p.error("figure needs --out"), names=names)
    else:
        print(table(args.root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
