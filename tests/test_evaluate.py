"""Sampling, prior swaps and the evaluation protocol."""
import json

import numpy as np
import pyro
import pytest
import torch
from pyro import poutine
from skimage.metrics import structural_similarity

from svg_pyro.cli import run_subcommand
from svg_pyro.config import preset
from svg_pyro.data.datasets import make_datasets, stack_videos
from svg_pyro.evaluation.metrics import interval
from svg_pyro.evaluation.summary import best_of_n, markdown_table, summarize, summarize_results
from svg_pyro.inference.sampling import chunk_plan, generate, predict, sample_chunks, video_groups
from svg_pyro.models.build import build_model
from svg_pyro.models.priors import fixed_prior, learned_prior_of, swap_prior
from svg_pyro.training.train import train


N_PAST, N_FRAMES = 2, 5


def built(model="svg-lp", seed=0):
    pyro.set_rng_seed(seed)
    svg = build_model(preset("tiny", model=model))
    return svg.eval()


@pytest.fixture
def context(tiny):
    return tiny[2][:, :N_PAST]


# ---------------------------------------------------------------------------------------------
# the protocol on hand-made scores


def test_best_of_n_picks_the_sample_with_the_best_average_over_predicted_frames():
    # (samples, videos, steps)
    scores = np.array([[[0.1, 0.3], [0.9, 0.7]],
                       [[0.5, 0.1], [0.6, 0.6]],
                       [[0.2, 0.2], [0.0, 1.0]]])
    index, per_step = best_of_n(scores)
    assert index.tolist() == [1, 0]  # video 0: averages .2 .3 .2; video 1: .8 .6 .5
    np.testing.assert_allclose(per_step, [[0.5, 0.1], [0.9, 0.7]])  # not the per-step maxima
    s = summarize(scores)
    np.testing.assert_allclose(s["best"]["per_step"], [0.7, 0.4])
    assert s["best"]["mean"] == pytest.approx(0.55)  # per-video averages .3 and .8
    assert s["best"]["ci95"] == pytest.approx(1.96 * np.std([0.3, 0.8], ddof=1) / np.sqrt(2))
    np.testing.assert_allclose(s["mean_of_n"]["per_step"], [(0.8 / 3 + 1.5 / 3) / 2, (0.6 / 3 + 2.3 / 3) / 2])
    assert s["mean_of_n"]["mean"] == pytest.approx((0.7 / 3 + 1.9 / 3) / 2)
    # a window of steps keeps the sample chosen over all steps: video 0 -> sample 1, video 1 -> sample 0
    w = summarize(scores, slice(1, 2))["best"]["window"]
    assert w["mean"] == pytest.approx((0.1 + 0.7) / 2)
    assert w["ci95"] == pytest.approx(1.96 * np.std([0.1, 0.7], ddof=1) / np.sqrt(2))


def test_interval_of_one_video_is_zero():
    mean, ci = interval(np.array([[0.4, 0.6]]))
    np.testing.assert_allclose(mean, [0.4, 0.6])
    np.testing.assert_allclose(ci, [0.0, 0.0])


def test_results_and_table_of_hand_made_scores():
    # (samples, videos, steps); PSNR is SSIM x 40 so that both columns check the same hand computation
    svg = np.array([[[0.1, 0.3], [0.9, 0.7]],
                    [[0.5, 0.1], [0.6, 0.6]],
                    [[0.2, 0.2], [0.0, 1.0]]])
    copy = np.array([[[0.2, 0.4], [0.6, 0.6]]])  # one prediction per video
    scores = {"svg": {"ssim": svg, "psnr": 40 * svg}, "copy_last_frame": {"ssim": copy, "psnr": 40 * copy}}
    labels = {"svg": "svg-lp", "copy_last_frame": "copy last frame"}
    results = summarize_results(scores, labels, slice(1, 2))
    assert list(results) == ["svg", "copy_last_frame"]
    assert [(r["label"], r["samples"]) for r in results.values()] == [("svg-lp", 3), ("copy last frame", 1)]
    assert results["copy_last_frame"]["ssim"]["best"] == results["copy_last_frame"]["ssim"]["mean_of_n"]
    protocol = {"dataset": "smmnist", "videos": 2, "n_past": 2, "horizon": 2, "samples": 3, "window": [3, 3]}
    lines = markdown_table({"protocol": protocol, "results": results}).splitlines()
    assert lines[2].endswith("| SSIM best, frames 3-3 | PSNR best, frames 3-3 |")
    # svg best: samples 1 and 0, video means .3 and .8, half-width 1.96 * (.5 / sqrt 2) / sqrt 2 = .49;
    # mean of N: video means 1.4 / 6 and 3.8 / 6, half-width 1.96 * .2; window (step 1): .1 and .7
    assert lines[4] == ("| svg-lp | 0.5500 +- 0.4900 | 0.4333 +- 0.3920 | 22.00 +- 19.60 | 17.33 +- 15.68 "
                        "| 0.4000 +- 0.5880 | 16.00 +- 23.52 |")
    # copy: video means .3 and .6, half-width 1.96 * .15; window: .4 and .6, half-width 1.96 * .1
    assert lines[5] == ("| copy last frame | 0.4500 +- 0.2940 | 0.4500 +- 0.2940 | 18.00 +- 11.76 "
                        "| 18.00 +- 11.76 | 0.5000 +- 0.1960 | 20.00 +- 7.84 |")


# ---------------------------------------------------------------------------------------------
# prior swaps


def _replay(model, guide_trace, context):
    return poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(context, N_PAST, N_FRAMES)


def shifted_prior(svg):
    """Make the (untrained, nearly N(0, I)) learned prior visibly different: mean 2."""
    with torch.no_grad():
        svg.prior.net.mu.bias.fill_(2.0)
    return svg


def test_fixed_swap_gives_standard_normal_z_only_at_generation_steps(context):
    svg = built()
    shifted_prior(svg)
    with torch.no_grad():
        guide_trace = poutine.trace(svg.guide).get_trace(context, N_PAST)
        own = _replay(svg.model, guide_trace, context)
        swapped = _replay(swap_prior(fixed_prior, from_step=N_PAST)(svg.model), guide_trace, context)
    for t in range(1, N_FRAMES):
        fn, own_fn = swapped.nodes[f"z_{t}"]["fn"], own.nodes[f"z_{t}"]["fn"]
        assert fn.batch_shape == own_fn.batch_shape and fn.event_shape == own_fn.event_shape == (4,)
        if t >= N_PAST:  # generated: N(0, I) instead of the learned prior
            assert torch.equal(fn.base_dist.loc, torch.zeros(4, 4))
            assert torch.equal(fn.base_dist.scale, torch.ones(4, 4))
            assert (own_fn.base_dist.loc - 2).abs().max() < 0.1
        else:  # conditioning: z from the guide, prior untouched
            assert torch.equal(swapped.nodes[f"z_{t}"]["value"], guide_trace.nodes[f"z_{t}"]["value"])
            assert torch.allclose(fn.base_dist.loc, own_fn.base_dist.loc)


def test_fixed_swap_through_predictive_draws_standard_normal_z(context):
    svg = built()
    shifted_prior(svg)
    z = predict(svg, context, N_PAST, N_FRAMES, 100, prior="fixed")["z"]  # (S, B, T-1, z)
    generated = z[:, :, N_PAST - 1:]
    assert abs(generated.mean().item()) < 0.05 and abs(generated.std().item() - 1) < 0.05
    own = predict(svg, context, N_PAST, N_FRAMES, 100)["z"][:, :, N_PAST - 1:]
    assert abs(own.mean().item() - 2) < 0.05  # without the swap: the learned prior, mean 2


def test_learned_prior_of_another_model_runs_its_lstm_on_its_own_encodings(context):
    svg = built(seed=0)
    other = built(seed=1)
    shifted_prior(other)
    with torch.no_grad():
        guide_trace = poutine.trace(svg.guide).get_trace(context, N_PAST)
        trace = _replay(learned_prior_of(other, context, N_PAST)(svg.model), guide_trace, context)
        generated = trace.nodes["_RETURN"]["value"]  # means of x_1 .. x_4
        frames = [context[:, 0], context[:, 1], generated[:, 1], generated[:, 2]]
        state = None
        for t in range(1, N_FRAMES):  # by hand: other's prior over other's encodings of x_0..x_{t-1}
            prior, state = other.prior(other.encoder(frames[t - 1])[0], state)
            fn = trace.nodes[f"z_{t}"]["fn"]
            if t >= N_PAST:
                torch.testing.assert_close(fn.base_dist.loc, prior.base_dist.loc)
                torch.testing.assert_close(fn.base_dist.scale, prior.base_dist.scale)


def test_learned_prior_of_the_model_itself_reproduces_its_own_samples(context):
    svg = built()
    pyro.set_rng_seed(5)
    own = predict(svg, context, N_PAST, N_FRAMES, 3)
    pyro.set_rng_seed(5)
    via_handler = predict(svg, context, N_PAST, N_FRAMES, 3, prior=svg)
    torch.testing.assert_close(via_handler["z"], own["z"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(via_handler["frames"], own["frames"], atol=1e-4, rtol=1e-4)


def test_swaps_that_cannot_work_are_refused(context):
    svg = built()
    det = built("det")
    fp = built("svg-fp")
    with pytest.raises(ValueError, match="no latent z"):
        predict(det, context, N_PAST, N_FRAMES, 1, prior="fixed")
    with pytest.raises(ValueError, match="SVG-LP"):
        learned_prior_of(fp, context, N_PAST)
    other = build_model(preset("tiny", z_dim=3)).eval()
    with pytest.raises(ValueError, match="same z_dim"):
        predict(svg, context, N_PAST, N_FRAMES, 1, prior=other)


# ---------------------------------------------------------------------------------------------
# chunked sampling


def test_chunks_tile_samples_by_videos_exactly_once():
    videos = torch.rand(5, N_PAST, 1, 64, 64)
    svg = built()
    seen = np.zeros((7, 5), int)
    for chunk in sample_chunks(svg, videos, N_PAST, N_FRAMES, 7, max_batch=3):
        assert chunk.frames.shape[:2] == (chunk.samples.stop - chunk.samples.start,
                                          chunk.videos.stop - chunk.videos.start)
        assert chunk.frames.shape[0] * chunk.frames.shape[1] <= 3
        seen[chunk.samples, chunk.videos] += 1
    assert (seen == 1).all()
    assert chunk_plan(256, 100, 256) == (2, 100)
    assert chunk_plan(256, 1000, 256) == (1, 256)
    assert chunk_plan(256, 100, 256, bn="train") == (2, 100)
    assert chunk_plan(5, 300, 256, bn="train") == (2, 128)
    assert video_groups(5, 2) == [(0, 2), (2, 4), (4, 5)]
    assert video_groups(5, 2, bn="train") == [(0, 2), (2, 5)]  # batch statistics: no single video


def test_batch_statistics_sampling_never_sees_a_single_video():
    svg = built()
    videos = torch.rand(3, N_PAST, 1, 64, 64)
    chunks = list(sample_chunks(svg, videos, N_PAST, N_FRAMES, 3, max_batch=2, bn="train"))
    assert all(c.videos.stop - c.videos.start >= 2 for c in chunks)
    assert sum((c.videos.stop - c.videos.start) * (c.samples.stop - c.samples.start) for c in chunks) == 9


def test_chunked_sampling_matches_unchunked(context):
    det = built("det")
    whole = generate(det, context, N_PAST, N_FRAMES, 3, max_batch=100)
    chunked = generate(det, context, N_PAST, N_FRAMES, 3, max_batch=1)
    torch.testing.assert_close(chunked, whole)  # deterministic: equal whatever the chunks
    assert torch.equal(whole[0], whole[2])
    svg = built()
    whole = generate(svg, context, N_PAST, N_FRAMES, 3, max_batch=100)
    chunked = generate(svg, context, N_PAST, N_FRAMES, 3, max_batch=2)
    assert whole.shape == chunked.shape == (3, 4, N_FRAMES, 1, 64, 64)
    for out in (whole, chunked):
        assert torch.equal(out[:, :, :N_PAST], context.expand(3, *context.shape))
        assert not torch.equal(out[0, :, N_PAST:], out[1, :, N_PAST:])  # samples differ


def test_batch_statistics_mode_changes_samples_but_not_the_model(context):
    svg = built()
    svg.train()
    before = {k: v.clone() for k, v in svg.state_dict().items()}
    pyro.set_rng_seed(0)
    eval_mode = generate(svg, context, N_PAST, N_FRAMES, 2, bn="eval")
    pyro.set_rng_seed(0)
    train_mode = generate(svg, context, N_PAST, N_FRAMES, 2, bn="train")
    assert not torch.allclose(eval_mode[:, :, N_PAST:], train_mode[:, :, N_PAST:], atol=1e-3)
    assert svg.training and all(m.training for m in svg.modules())
    for k, v in svg.state_dict().items():
        assert torch.equal(v, before[k]), k
    with pytest.raises(ValueError, match="BatchNorm mode"):
        generate(svg, context, N_PAST, N_FRAMES, 1, bn="batch")


# ---------------------------------------------------------------------------------------------
# the command line


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    for model in ("svg-lp", "det"):
        train(preset("tiny", model=model, steps=2, sample_every=10_000), root / model, progress=False)
    return {m: str(root / m / "checkpoint.pt") for m in ("svg-lp", "det")}


def test_cli_writes_the_documented_metrics(checkpoints, tmp_path, tiny_data):
    out = tmp_path / "eval"
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["svg-lp"], "--out", str(out), "--samples", "3", "--videos", "5",
                 "--horizon", "4", "--det-checkpoint", checkpoints["det"], "--batch", "4", "--window", "3", "4",
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    p = metrics["protocol"]
    settings = (p["samples"], p["videos"], p["n_past"], p["horizon"], p["prior"], p["batchnorm"])
    assert settings == (3, 5, 2, 4, "own", "eval")
    assert "11x11 Gaussian" in p["metrics"]["ssim"]
    assert metrics["time_steps"] == [2, 3, 4, 5]
    assert set(metrics["results"]) == {"svg", "deterministic", "copy_last_frame"}
    for key, result in metrics["results"].items():
        assert result["samples"] == (3 if key == "svg" else 1)
        for metric in ("ssim", "psnr"):
            for kind in ("best", "mean_of_n"):
                s = result[metric][kind]
                assert len(s["per_step"]) == len(s["per_step_ci95"]) == 4
                assert s["mean"] == pytest.approx(np.mean(s["per_step"]), rel=1e-5)
                if kind == "best":  # frames 3-4 are steps 1-2 of the 4 predicted ones
                    assert s["window"]["mean"] == pytest.approx(np.mean(s["per_step"][1:3]), rel=1e-5)
    # copy-last-frame SSIM against scikit-image on the same test videos
    config, _, test = tiny_data
    reference = [[structural_similarity(test[v][N_PAST - 1, 0].double().numpy(), frame[0].double().numpy(),
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1) for frame in test[v][N_PAST:]]
                 for v in range(5)]
    # the tiny test videos have 5 frames; the evaluation's have 6 and start the same way
    copy = metrics["results"]["copy_last_frame"]["ssim"]["best"]["per_step"]
    np.testing.assert_allclose(copy[:3], np.mean(reference, axis=0), atol=1e-5)
    for name in ("per_step.png", "samples.png", "samples.gif", "table.md"):
        assert (out / name).stat().st_size > 100
    assert "copy last frame" in (out / "table.md").read_text()
    assert "SSIM best, frames 3-4" in (out / "table.md").read_text()
    # the motion probe on the same 5 videos, both models; copy-last against the generator's positions
    longer = make_datasets(config, split_lengths=(config.frames_per_video, N_PAST + 4))[1]  # the evaluation's
    truth = np.stack([longer.trajectory(v)["positions"][:, N_PAST - 1:] for v in range(5)])  # (5, D, 5, 2)
    copy_error = np.linalg.norm(truth[:, :, 1:] - truth[:, :, :1], axis=-1).mean()
    for key in ("svg", "deterministic"):
        motion = metrics["results"][key]["motion"]
        assert len(motion["displacement_error_t"]) == len(motion["one_step_displacement_error_t"]) == 4
        assert motion["copy_last_position_error"] == pytest.approx(copy_error)
    assert "one-step from the true previous frames" in (out / "table.md").read_text()


def test_cli_fixed_prior_and_errors(checkpoints, tmp_path, capsys):
    out = tmp_path / "fixed"
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["svg-lp"], "--out", str(out), "--samples", "2", "--videos", "2",
                 "--horizon", "2", "--prior", "fixed", "--no-progress"]) == 0
    assert json.loads((out / "metrics.json").read_text())["protocol"]["prior"] == "fixed N(0, I)"
    capsys.readouterr()
    assert run_subcommand("evaluate", ["--checkpoint", str(tmp_path / "missing.pt"), "--out", str(out), "--no-progress"]) == 2
    assert "--checkpoint: no checkpoint at" in capsys.readouterr().err
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["svg-lp"], "--out", str(out), "--videos", "100000", "--no-progress"]) == 2
    assert "more test videos" in capsys.readouterr().err
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["svg-lp"], "--out", str(out), "--horizon", "4", "--window", "1", "3",
                 "--no-progress"]) == 2
    assert "--window 1 3 must lie within the predicted frames 2..5" in capsys.readouterr().err
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["det"], "--out", str(out), "--prior", "fixed", "--no-progress"]) == 2
    assert "deterministic" in capsys.readouterr().err
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["svg-lp"], "--out", str(out), "--det-checkpoint",
                 checkpoints["svg-lp"], "--videos", "2", "--samples", "1", "--horizon", "1", "--no-progress"]) == 2
    assert "must be a deterministic model" in capsys.readouterr().err
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["svg-lp"], "--out", str(out), "--horizon", str(10**12),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "GiB of memory" in err and "lower --horizon" in err and err.count("\n") == 1
    blocked = tmp_path / "a-file"
    blocked.write_text("x")
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["svg-lp"], "--out", str(blocked), "--samples", "1", "--videos", "2",
                 "--horizon", "1", "--no-progress"]) == 2
    assert capsys.readouterr().err.startswith("error: cannot write")


def test_every_input_is_checked_before_anything_is_sampled_or_written(checkpoints, tmp_path, capsys):
    """A missing, wrong-kind or other-data --det-checkpoint, and --data-root on an SM-MNIST model, are
    refused in one line before the main model is sampled: --out is not created."""
    state = torch.load(checkpoints["det"], weights_only=True)
    state["config"]["num_digits"] = 1
    one_digit = tmp_path / "det-1digit.pt"
    torch.save(state, one_digit)
    out = tmp_path / "eval"
    base = ["--checkpoint", checkpoints["svg-lp"], "--out", str(out), "--samples", "1", "--videos", "2",
            "--horizon", "1", "--no-progress"]
    for extra, reason in ((["--det-checkpoint", str(tmp_path / "missing.pt")], "--det-checkpoint: no checkpoint at"),
                          (["--det-checkpoint", checkpoints["svg-lp"]], "must be a deterministic model"),
                          (["--det-checkpoint", str(one_digit)], "num_digits=1 but the main checkpoint on 2"),
                          (["--data-root", str(tmp_path)], "SM-MNIST is generated")):
        assert run_subcommand("evaluate", [*base, *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and reason in err, err
        assert not out.exists()
    # another split than the model was trained with runs, with a warning line
    assert run_subcommand("evaluate", [*base, "--n-past", "3"]) == 0
    assert "warning: --n-past 3 differs from the 2 conditioning frames" in capsys.readouterr().err
    assert json.loads((out / "metrics.json").read_text())["protocol"]["n_past"] == 3


def test_a_run_without_progress_bar_says_how_long_it_will_take(checkpoints, tmp_path, capsys, monkeypatch):
    from svg_pyro.evaluation import evaluate as evaluation

    monkeypatch.setattr(evaluation, "ESTIMATE_AFTER", 0.0)  # at once, not after 30 s
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["svg-lp"], "--out", str(tmp_path), "--samples", "4",
                                       "--videos", "3", "--horizon", "1", "--batch", "2", "--motion-videos", "0",
                                       "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert err.count("more minutes at this pace") == 1 and "0.5 of 3 videos" in err, err


def test_cli_bounds_of_the_model_and_the_baseline(checkpoints, tmp_path, capsys):
    """--bound-particles: the bounds of both models in metrics.json and the table; the baseline's
    ELBO and IWAE are its exact log-likelihood, the model's IWAE sits above its ELBO on average."""
    from svg_pyro.checkpoint import load_model

    out = tmp_path / "eval"
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["svg-lp"], "--out", str(out), "--samples", "2",
                                       "--videos", "3", "--horizon", "3", "--det-checkpoint", checkpoints["det"],
                                       "--bound-particles", "1", "20", "--no-progress"]) == 0
    assert "Held-out bounds on log p(x_2..x_T | x_1)" in capsys.readouterr().out
    results = json.loads((out / "metrics.json").read_text())["results"]
    lp, det = results["svg"]["bound"], results["deterministic"]["bound"]
    assert lp["frames"] == det["frames"] == 2 + 3 - 1 and lp["videos"] == 3
    assert set(lp["iwae"]) == {"1", "20"} and len(lp["per_step_elbo"]) == 4
    assert lp["elbo"]["per_frame"] == pytest.approx(lp["elbo"]["per_video"] / 4)
    assert sum(lp["per_step_elbo"]) == pytest.approx(lp["elbo"]["per_video"], rel=1e-6)
    assert lp["iwae"]["20"]["per_video"] > lp["elbo"]["per_video"]
    # the deterministic model: every bound is the same number, its log-likelihood of the 3 videos,
    # here the Gaussian log density of each frame around the model's teacher-forced prediction
    config, det_svg, _ = load_model(checkpoints["det"])
    test = make_datasets(config, split_lengths=(config.frames_per_video, config.n_past + 3))[1]
    videos = stack_videos(test, 3)
    with torch.no_grad():
        means = det_svg.model(videos, config.n_past)  # x_1 .. x_T given the true previous frames
    exact = torch.distributions.Normal(means, config.likelihood_scale).log_prob(videos[:, 1:]).sum((1, 2, 3, 4))
    for value in (det["elbo"], det["iwae"]["1"], det["iwae"]["20"]):
        assert value["per_video"] == pytest.approx(exact.mean().item(), rel=1e-5)
    assert "IWAE K=20" in (out / "table.md").read_text() and (out / "bounds.png").stat().st_size > 1000
    assert run_subcommand("evaluate", ["--checkpoint", checkpoints["svg-lp"], "--out", str(out), "--prior", "fixed",
                                       "--bound-particles", "5", "--no-progress"]) == 2
    assert "own prior" in capsys.readouterr().err
