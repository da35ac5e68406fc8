"""The protocol's summaries of score arrays (best-of-N and mean-of-N with 95% intervals over
videos) and the Markdown tables of metrics.json that ``svg-pyro evaluate`` prints."""
from __future__ import annotations

import numpy as np

from svg_pyro.evaluation.metrics import interval


def best_of_n(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """scores (samples, videos, steps) -> (index of the best sample per video, its per-step scores
    (videos, steps)); best = highest mean over the steps (the predicted frames)."""
    best = scores.mean(axis=2).argmax(axis=0)
    return best, scores[best, np.arange(scores.shape[1])]


def summarize(scores: np.ndarray, window: slice | None = None) -> dict:
    """Best-of-N and mean-of-N summaries of one metric's scores (samples, videos, steps); with
    ``window`` (a slice of steps), also the mean and interval of each video's average over it
    (the best sample is still the best over all predicted steps)."""
    out = {}
    for name, per_step in (("best", best_of_n(scores)[1]), ("mean_of_n", scores.mean(axis=0))):
        mean, ci = interval(per_step.mean(axis=1))
        step_mean, step_ci = interval(per_step)
        out[name] = {"mean": float(mean), "ci95": float(ci),
                     "per_step": step_mean.tolist(), "per_step_ci95": step_ci.tolist()}
        if window is not None:
            w_mean, w_ci = interval(per_step[:, window].mean(axis=1))
            out[name]["window"] = {"mean": float(w_mean), "ci95": float(w_ci)}
    return out


def summarize_results(scores: dict, labels: dict, window_steps: slice | None = None) -> dict:
    """metrics.json's "results": per result key, its label, its number of samples and, per metric,
    the best-of-N and mean-of-N summaries (``summarize``)."""
    return {key: {"label": labels[key], "samples": int(next(iter(s.values())).shape[0]),
                  **{name: summarize(values, window_steps) for name, values in s.items()}}
            for key, s in scores.items()}


def bounds_table(metrics: dict) -> str:
    """The held-out bounds of metrics.json (where asked for) in Markdown: nats per predicted frame."""
    bounded = {r["label"]: r["bound"] for r in metrics["results"].values() if "bound" in r}
    if not bounded:
        return ""
    first = next(iter(bounded.values()))
    ks = list(first["iwae"])
    lines = [f"Held-out bounds on log p(x_2..x_T | x_1), nats per frame ({first['frames']} frames, "
             f"{first['videos']} videos; mean +- 95% interval)", "",
             "| model | ELBO | " + " | ".join(f"IWAE K={k}" for k in ks) + " | seconds |",
             "| --- | --- |" + " --- |" * len(ks) + " --- |"]
    for label, b in bounded.items():
        cells = [b["elbo"]] + [b["iwae"][k] for k in ks]
        lines.append(f"| {label} | " + " | ".join(f"{c['per_frame']:.2f} +- {c['ci95_per_frame']:.2f}"
                                                   for c in cells) + f" | {b.get('seconds', '')} |")
    return "\n".join(lines) + "\n"


def motion_table(metrics: dict) -> str:
    """The motion probe's scores (where it ran) in Markdown: per predicted step, the displacement
    error free-running and teacher-forced one-step, and the certain-step and position errors."""
    probed = {r["label"]: r["motion"] for r in metrics["results"].values() if "motion" in r}
    if not probed:
        return ""
    steps = len(next(iter(probed.values()))["displacement_error_t"])
    lines = ["Motion probe (pixels; digits found in 5 samples per video): displacement error per predicted step, "
             "free-running / one-step from the true previous frames", "",
             "| model | certain-step error | position error best / mean | "
             + " | ".join(f"step {i}" for i in range(1, steps + 1)) + " |", "| --- " * (3 + steps) + "|"]
    for label, m in probed.items():
        certain = m["certain_displacement_error"]
        cells = [f"{a:.2f} / {b:.2f}" for a, b in zip(m["displacement_error_t"], m["one_step_displacement_error_t"])]
        lines.append(f"| {label} | {'-' if certain is None else f'{certain:.2f}'} | {m['position_error_best']:.2f} / "
                     f"{m['position_error_mean']:.2f} | " + " | ".join(cells) + " |")
    m = next(iter(probed.values()))
    copy = m["copy_last_certain_displacement_error"]
    lines.append(f"| copy last frame | {'-' if copy is None else f'{copy:.2f}'} | {m['copy_last_position_error']:.2f} | "
                 + " | ".join("" for _ in range(steps)) + " |")
    return "\n".join(lines) + "\n"


def markdown_table(metrics: dict) -> str:
    p = metrics["protocol"]
    lines = [f"{p['dataset']}, {p['videos']} test videos, {p['n_past']} given -> {p['horizon']} predicted, "
             f"{p['samples']} samples per video (mean over videos +- 95% interval)", "",
             "| model | SSIM best | SSIM mean-of-N | PSNR best | PSNR mean-of-N |",
             "| --- | --- | --- | --- | --- |"]
    window = p.get("window")
    if window:
        lines[-2] = lines[-2] + f" SSIM best, frames {window[0]}-{window[1]} | PSNR best, frames {window[0]}-{window[1]} |"
        lines[-1] = lines[-1] + " --- | --- |"

    def cell(summary, metric):
        digits = 4 if metric == "ssim" else 2
        return f"{summary['mean']:.{digits}f} +- {summary['ci95']:.{digits}f}"

    for r in metrics["results"].values():
        cells = [cell(r[m][k], m) for m in ("ssim", "psnr") for k in ("best", "mean_of_n")]
        if window:
            cells += [cell(r[m]["best"]["window"], m) for m in ("ssim", "psnr")]
        lines.append(f"| {r['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
