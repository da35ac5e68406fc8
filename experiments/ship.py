"""The trained models in checkpoints/: the command that trains each, and how they get there.

    python experiments/ship.py train [NAME ...]   # trains the models (all by default) into runs/ship/NAME
    python experiments/ship.py export             # their fp16 weights into checkpoints/NAME.pt, with
                                                  # checkpoints/manifest.json and checkpoints/README.md
    python experiments/ship.py trend [NAME ...]   # where a run's certain-step error is heading

Each model is trained by ``OMP_NUM_THREADS=1 python svi_train.py FLAGS --out runs/ship/NAME`` with its
flags below; ``train`` runs them one after the other (the shipped ones ran three at a time, one thread
each, on the project's 2-core machine, the 2-digit ones two at a time, at the commits COMMITS gives). The thread count is part of the command:
the CPU kernels' sums run in another order with two threads, and the weights then differ in the last
bits. ``export`` records for each model the command, the commit, its steps and training time, its
last motion-probe scores, and ``svg_pyro.inference.sampling.sample_fingerprint`` (checked by
tests/test_shipped.py). A model whose run folder is gone keeps its file and manifest entry.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "ship"
COMMON = ["--steps", "7000", "--sample-every", "250", "--checkpoint-every", "500"]
ONE_DIGIT = ["--preset", "smmnist-1digit-cpu", "--batch-size", "8"]  # 1 digit, non-uniform velocities
TWO_DIGITS = ["--preset", "smmnist-cpu", "--batch-size", "8"]  # the paper's SM-MNIST: 2 digits
MODELS = {
    "smmnist-1digit-svg-lp": ONE_DIGIT,
    "smmnist-1digit-svg-fp": ONE_DIGIT + ["--model", "svg-fp"],
    "smmnist-1digit-det": ONE_DIGIT + ["--model", "det"],
    "smmnist-2digit-svg-lp": TWO_DIGITS,
    "smmnist-2digit-det": TWO_DIGITS + ["--model", "det"],
}
# the code each was trained with (the commits between them do not change a training step's numbers)
COMMITS = {name: "50da004" if "1digit" in name else "a9695a4" for name in MODELS}
PROBED = ("certain_displacement_error", "position_error_best", "position_error_mean",
          "copy_last_certain_displacement_error", "copy_last_position_error")


def command(name: str) -> list[str]:
    return ["python", "svi_train.py", *MODELS[name], *COMMON, "--out", f"runs/ship/{name}"]


def train(names) -> None:
    unknown = set(names) - set(MODELS)
    if unknown:
        raise SystemExit(f"error: unknown model {', '.join(sorted(unknown))}; choose from {', '.join(MODELS)}")
    for name in names or MODELS:
        print("OMP_NUM_THREADS=1", " ".join(command(name)), flush=True)
        subprocess.run([sys.executable, *command(name)[1:], "--no-progress"], cwd=ROOT, check=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"})


def export() -> None:
    from svg_pyro.checkpoint import SHIPPED, export_weights
    from svg_pyro.inference.sampling import sample_fingerprint

    manifest_path = SHIPPED / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for name in MODELS:
        run = RUNS / name
        if not (run / "checkpoint.pt").exists():
            kept = "kept as shipped" if name in manifest else "not trained"
            print(f"{name}: no run in {run} ({kept}; python experiments/ship.py train {name})")
            continue
        weights = export_weights(run / "checkpoint.pt", SHIPPED / f"{name}.pt", half=True, overwrite=True)
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
        probed = [r for r in rows if r.get("certain_displacement_error") is not None][-3:]
        manifest[name] = {
            "command": "OMP_NUM_THREADS=1 " + " ".join(command(name)),
            "commit": COMMITS[name],
            "steps": weights["step"],
            "training_minutes": round(sum(r["seconds"] for r in rows) / 60, 1),
            "probe_minutes": round(sum(r.get("probe_seconds") or 0 for r in rows) / 60, 1),
            "last_3_probes_mean": {k: round(sum(r[k] for r in probed) / len(probed), 3) for k in PROBED},
            "fingerprint": [round(v, 6) for v in sample_fingerprint(SHIPPED / f"{name}.pt")],
        }
        print(f"{name}: step {weights['step']}, {(SHIPPED / f'{name}.pt').stat().st_size / 2**20:.1f} MiB")
    manifest = {name: manifest[name] for name in MODELS if name in manifest}
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    (SHIPPED / "README.md").write_text(readme(manifest))


def power_law_fit(steps, errors, target: float) -> dict:
    """Least-squares fit of log(error) = a + b log(step); the step where the fitted line reaches
    ``target``, and the same for the ends of the slope's ~95% interval (+-2 standard errors)."""
    import numpy as np

    (b, a), cov = np.polyfit(np.log(steps), np.log(errors), 1, cov=True)
    interval = b + np.array([-2.0, 2.0]) * np.sqrt(cov[0, 0])

    def reach(slope):
        return float(np.exp((np.log(target) - a) / slope)) if slope < 0 else float("inf")

    ends = sorted(reach(slope) for slope in interval)
    return {"slope": float(b), "slope_interval": interval.tolist(), "reach": reach(b), "reach_range": ends}


def trend(names, target: float = 0.5, since: int = 1000) -> None:
    """Where a run's certain-step displacement error is heading: the power law fitted to its motion
    probes from step ``since`` on, and when it would reach ``target`` px/frame; a rough guide to the
    budget (a power law cannot know about a floor the curve may reach first)."""
    for name in names or MODELS:
        metrics = RUNS / name / "metrics.jsonl"
        if not metrics.exists():
            print(f"{name}: no run in {metrics.parent} (python experiments/ship.py train {name})")
            continue
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
        probed = [r for r in rows if r.get("certain_displacement_error") is not None and r["step"] >= since]
        fit = power_law_fit([r["step"] for r in probed], [r["certain_displacement_error"] for r in probed], target)
        minutes_per_step = sum(r["seconds"] for r in rows) / 60 / rows[-1]["step"]
        batch = json.loads((RUNS / name / "config.json").read_text())["batch_size"]
        low, high = fit["slope_interval"]
        print(f"{name}: error ~ step^{fit['slope']:.3f} (95% {low:.3f} to {high:.3f}) over {len(probed)} probes "
              f"from step {since}; {target} px/frame at step {fit['reach']:.3g} (range {fit['reach_range'][0]:.3g} "
              f"to {fit['reach_range'][1]:.3g}), i.e. {fit['reach'] * batch:.3g} videos, "
              f"{fit['reach'] * minutes_per_step / 60:.3g} hours at this run's pace")


def readme(manifest: dict) -> str:
    lines = [
        "# Trained models", "",
        "Weights only (stored in fp16, loaded as fp32), written by `python experiments/ship.py export` from the",
        "runs `python experiments/ship.py train` makes. Every command, `svg_pyro.checkpoint.load_model` and the",
        "notebooks take the short name: `svg-pyro evaluate --checkpoint smmnist-2digit-svg-lp`. `manifest.json`",
        "holds the same facts and a fingerprint of each model's samples, which `tests/test_shipped.py` checks.",
        "Trained on the project's 2-core CPU machine, several runs at a time with one thread each (the",
        "training minutes exclude the motion probe's, listed apart; wall time was longer while runs shared the",
        "machine).", "",
        "| name | steps | training min | probe min | certain-step displacement error (px/frame) "
        "| position error best / mean (px) | command | commit |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, m in manifest.items():
        probe = m["last_3_probes_mean"]
        lines.append(f"| `{name}` | {m['steps']} | {m['training_minutes']} | {m['probe_minutes']} "
                     f"| {probe['certain_displacement_error']:.2f} ({probe['copy_last_certain_displacement_error']:.2f}) "
                     f"| {probe['position_error_best']:.2f} / {probe['position_error_mean']:.2f} "
                     f"({probe['copy_last_position_error']:.2f}) | `{m['command']}` | {m['commit']} |")
    lines += ["", "The probe columns are the means of the last three motion probes of the run (16 test videos, 5",
              "futures each; `svg_pyro.evaluation.motion`), with copying the last given frame's scores in brackets."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("train").add_argument("names", nargs="*", metavar="NAME", help=", ".join(MODELS))
    sub.add_parser("export")
    sub.add_parser("trend").add_argument("names", nargs="*", metavar="NAME", help=", ".join(MODELS))
    args = p.parse_args()
    if args.action == "export":
        export()
    else:
        {"train": train, "trend": trend}[args.action](args.names)


if __name__ == "__main__":
    main()
