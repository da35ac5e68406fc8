"""--tensorboard: the event files hold the metrics.jsonl values and the sample grids, read back with
TensorBoard's own reader; a resumed run replaces the steps logged after its checkpoint."""
import json

import numpy as np
from tensorboard.backend.event_processing import event_accumulator

from svg_pyro.config import preset
from svg_pyro.training.train import train


def _events(out):
    acc = event_accumulator.EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def _rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_holds_the_logged_metrics_and_the_sample_grid(tmp_path):
    config = preset("tiny", steps=4, checkpoint_every=2, sample_every=4, tensorboard=True)
    train(config, tmp_path, progress=False)
    # pretend the run died at step 4 before its last checkpoint: restore a step-2 checkpoint
    train(preset("tiny", steps=2, sample_every=10_000), tmp_path / "b", progress=False)
    (tmp_path / "checkpoint.pt").write_bytes((tmp_path / "b" / "checkpoint.pt").read_bytes())
    train(preset("tiny", steps=5, sample_every=5, tensorboard=True), tmp_path, resume=True, progress=False)

    acc, rows = _events(tmp_path), _rows(tmp_path)
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [1, 2, 3, 4, 5]  # steps 3 and 4 of the first session were purged
    for name in ("loss", "mse", "kl", "kl_per_step"):
        np.testing.assert_allclose([e.value for e in acc.Scalars(f"train/{name}")], [r[name] for r in rows],
                                   rtol=1e-6)  # TensorBoard stores float32
    for t in range(1, config.frames_per_video):
        np.testing.assert_allclose([e.value for e in acc.Scalars(f"kl_per_transition/t{t:02d}")],
                                   [r["kl_t"][t - 1] for r in rows], rtol=1e-6)
    images = acc.Images("samples")
    # 4 test videos x (truth + 2 samples) rows of 5 frames of 64 x 64
    assert [e.step for e in images] == [5]  # the grid of step 4 was purged with the steps after 2
    assert {(e.height, e.width) for e in images} == {(12 * 64, 5 * 64)}


def test_runs_without_the_flag_write_no_event_files(tmp_path):
    train(preset("tiny", steps=1, sample_every=10_000), tmp_path, progress=False)
    assert not (tmp_path / "tensorboard").exists()
