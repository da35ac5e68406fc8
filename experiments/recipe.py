"""Which training settings learn SM-MNIST dynamics fastest per CPU-minute? One change at a time.

Every arm is the 1-digit non-uniform CPU preset (SVG-LP unless it says otherwise) with one setting
changed, trained on the same seed; the motion probe (``svg_pyro.evaluation.motion``) scores it every 250 steps.
Arms whose steps cost less run more of them, so that all get about the same training time.

    python experiments/recipe.py run [ARM ...] [--root runs/recipe]   # trains the arms not yet trained
    python experiments/recipe.py table [--root runs/recipe] [--minutes M]
    python experiments/recipe.py plot [ARM ...] --out curves.png [--root runs/recipe]

``plot`` draws the arms' KL and motion curves against those training minutes (``kl-curves``'s figure).
``table`` prints, per arm, the mean of the probe's last three scores at or before ``M`` training minutes (default: the
shortest arm's total), in Markdown. Training minutes are steps times the arm's median step time, so
that other work on the machine during a run does not count against it. Results and their discussion: docs/recipe.md.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


PROBES_AVERAGED = 3  # the probe is noisy from one interval to the next: the table averages the last three
# the preset as it was when the screen ran (it has since taken batch 8, this screen's result)
BASE = ["--preset", "smmnist-1digit-cpu", "--batch-size", "16", "--sample-every", "250", "--checkpoint-every", "1000"]

# name: (flags that differ from the preset, steps); steps scaled by the measured step cost
ARMS = {
    "base": ([], 3000),
    "det": (["--model", "det"], 3000),
    "beta-1e-3": (["--beta", "1e-3"], 3000),
    "batch-8": (["--batch-size", "8"], 5000),
    "batch-8-seed-1": (["--batch-size", "8", "--seed", "1"], 5000),
    "lr-1e-3": (["--lr", "1e-3"], 3000),
    "lr-4e-3": (["--lr", "4e-3"], 3000),
    "cosine": (["--lr-schedule", "cosine"], 3000),
    "skip-second-last": (["--skip-frame", "second-last"], 3000),
    "n-future-10": (["--n-future", "10"], 2000),
    "width-32": (["--width", "32"], 1200),
    "base-seed-1": (["--seed", "1"], 3000),
    "beta-1e-3-seed-1": (["--beta", "1e-3", "--seed", "1"], 3000),
    "det-seed-1": (["--model", "det", "--seed", "1"], 3000),
}


# A second seed has its first seed's step cost (same configuration); its own run may have shared the
# machine with other work, so its minutes use the first seed's median step time.
PACE_OF = {"base-seed-1": "base", "batch-8-seed-1": "batch-8", "beta-1e-3-seed-1": "beta-1e-3",
           "det-seed-1": "det"}


def run(names, root: Path) -> None:
    for name in names or ARMS:
        out = root / name
        if (out / "checkpoint.pt").exists():
            print(f"{name}: already trained in {out}")
            continue
        flags, steps = ARMS[name]
        command = ["svg-pyro", "train", *BASE, *flags, "--steps", str(steps), "--out", str(out), "--no-progress"]
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)


def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]


def step_minutes(rows) -> float:
    """Training minutes per step: the median over logged rows, so that a spell of other work on the
    machine (a test run, an editor) does not count; the probe's time is not in it."""
    per_step = sorted(r["seconds"] / (r["step"] - prev["step"]) for prev, r in zip(rows, rows[1:]))
    return per_step[len(per_step) // 2] / 60


def last_probes(rows, minutes: float, pace: float, count: int = PROBES_AVERAGED):
    """The last ``count`` probed rows within ``minutes`` of training (``pace`` minutes a step), and
    the last one's minutes."""
    probed = [r for r in rows if r.get("certain_displacement_error") is not None and r["step"] * pace <= minutes + 1e-9]
    return (probed[-count:], probed[-1]["step"] * pace) if probed else (None, None)


def table(root: Path, minutes: float | None) -> str:
    done = [name for name in ARMS if (root / name / "metrics.jsonl").exists()]
    if not done:
        raise SystemExit(f"no arm has run under {root}")
    runs = {name: read_rows(root / name) for name in done}
    paces = {name: step_minutes(runs.get(PACE_OF.get(name), rows)) for name, rows in runs.items()}
    totals = {name: rows[-1]["step"] * paces[name] for name, rows in runs.items()}
    minutes = minutes if minutes is not None else min(totals.values())
    lines = [f"Means of the last {PROBES_AVERAGED} probes (one every 250 steps) within {minutes:.1f} training "
             "minutes (steps x the arm's median step time).", "",
             "| arm | s/step | last step | minutes | KL/step | certain-step displacement error (px/frame) "
             "| position error best / mean (px) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, rows in runs.items():
        probes, at = last_probes(rows, minutes, paces[name])
        if probes is None:
            continue

        def mean(key):
            return sum(r[key] for r in probes) / len(probes)

        r = probes[-1]
        lines.append(f"| {name} | {paces[name] * 60:.3f} | {r['step']} | {at:.1f} | {mean('kl_per_step'):.2f} "
                     f"| {mean('certain_displacement_error'):.2f} | {mean('position_error_best'):.2f} / "
                     f"{mean('position_error_mean'):.2f} |")
    # every arm probes the same test videos, so copy-last-frame's figures are the same for all
    scale = next(r for r in runs[done[0]] if r.get("certain_displacement_error") is not None)
    lines += ["", f"Copy-last-frame on the same videos: {scale['copy_last_certain_displacement_error']:.2f} px/frame "
              f"on the certain steps, position error {scale['copy_last_position_error']:.2f} px."]
    return "\n".join(lines)


def plot(root: Path, names, out: Path) -> None:
    """The arms' curves (svg_pyro.evaluation.kl_curves) against steps x each arm's median step time."""
    from svg_pyro.evaluation.kl_curves import plot_kl_curves

    runs = {}
    for name in names or [n for n in ARMS if (root / n / "metrics.jsonl").exists()]:
        rows = read_rows(root / name)
        first = root / PACE_OF.get(name, name)
        pace = step_minutes(read_rows(first) if (first / "metrics.jsonl").exists() else rows) * 60
        runs[name] = [{**r, "seconds": pace * (r["step"] - prev)} for prev, r in zip([0] + [r["step"] for r in rows], rows)]
    plot_kl_curves(runs, out, smooth=5, title="1-digit SM-MNIST, one setting changed per arm", x="minutes",
                   x_label="training minutes (steps x the arm's median step time)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("run", "table", "plot"))
    p.add_argument("arms", nargs="*", help=f"arms to train (default all): {', '.join(ARMS)}")
    p.add_argument("--root", type=Path, default=Path("runs/recipe"))
    p.add_argument("--minutes", type=float)
    p.add_argument("--out", type=Path, help="PNG written by plot")
    args = p.parse_args(argv)
    unknown = sorted(set(args.arms) - set(ARMS))
    if unknown:
        p.error(f"unknown arms {unknown}; choose from {list(ARMS)}")
    if args.action == "run":
        run(args.arms, args.root)
    elif args.action == "plot":
        plot(args.root, args.arms, args.out or p.error("plot needs --out"))
    else:
        print(table(args.root, args.minutes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
