"""The prepared GPU check (benchmarks/device_check.sh) in its CPU dry run: every step runs, what comes
back fits the device tool's limits, and the split weights join into a loadable model."""
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

from svg_pyro.checkpoint import load_model


ROOT = Path(__file__).resolve().parents[1]


def test_the_dry_run_passes_every_step_and_returns_what_the_device_tool_can_carry(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "device_check.sh"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=600)
    report = (out / "report.md").read_text()
    assert done.returncode == 0, done.stdout + done.stderr
    statuses = re.findall(r"^(.+): exit (\d+) after", report, flags=re.M)
    assert [name for name, _ in statuses] == [
        "CUDA tests (pytest -m cuda)", "host syncs and GPU busy time", "training step, fp32 (TF32 off)",
        "sampling throughput", "data wait with loader workers", statuses[5][0], "resume",
        "evaluation (2 videos x 2 samples)", "export fp16 weights"]
    assert statuses[5][0].startswith("training, --preset tiny (")
    assert all(code == "0" for _, code in statuses), statuses
    # the 7 CUDA tests pass on a GPU and skip cleanly without one
    assert ("7 passed" if torch.cuda.is_available() else "7 skipped") in report
    assert "| host reads per step (item, tolist, float, bool) | 1.0 |" in report
    assert re.search(r"trained to step 1[0-9]; median [0-9.]+ s per step", report)

    files = sorted(p.name for p in out.iterdir())
    # the device tool returns at most 8 files of at most 16 MiB each, 64 MiB in all
    assert len(files) <= 8 and all((out / f).stat().st_size <= 16 * 2**20 for f in files)
    assert {"report.md", "device_check.log", "metrics.jsonl", "evaluation.json", "samples.png"} <= set(files)
    parts = [out / f for f in files if f.startswith("weights.pt.part-")]
    assert len(parts) >= 2  # the dry run splits its small file too, so that joining is tested
    joined = tmp_path / "weights.pt"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    config, svg, step = load_model(joined)
    assert config.n_past == 2 and step >= 21
    assert all(torch.isfinite(p).all() for p in svg.parameters())
