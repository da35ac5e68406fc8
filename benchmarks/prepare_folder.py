"""`svg-pyro prepare folder`: throughput and peak memory against the number of source files.

Writes N mp4 files (MPEG-4 Part 2, 160x120, 40 frames of a moving square each) to a temporary
folder, prepares them into a 64x64 grayscale store in a fresh process, and reports the frames per
second and that process's peak resident memory, for each N. Memory that does not grow with N shows
that preparation streams one file at a time.

    python benchmarks/prepare_folder.py --files 10 100
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


FRAMES = 40


def write_sources(folder: Path, count: int) -> None:
    import av

    for i in range(count):
        with av.open(str(folder / f"clip{i:04d}.mp4"), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
            for t in range(FRAMES):
                frame = np.full((120, 160, 3), 40, np.uint8)
                x = (3 * t + 7 * i) % 140
                frame[50:70, x:x + 20] = 220
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--files", type=int, nargs="+", default=[10, 100])
    args = p.parse_args()
    print("| source files | frames | seconds | frames / s | peak memory of the process (MiB) |\n| --- | --- | --- | --- | --- |")
    for count in args.files:
        with tempfile.TemporaryDirectory() as tmp:
            src, out = Path(tmp) / "src", Path(tmp) / "store"
            src.mkdir()
            write_sources(src, count)
            code = ("import resource, sys; from svg_pyro.data.folder import prepare_folder; "
                    f"prepare_folder({str(src)!r}, {str(out)!r}, frames_per_clip=20, progress=False); "
                    "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
            tick = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
            seconds = time.perf_counter() - tick
            peak_mib = int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux
            frames = count * FRAMES
            print(f"| {count} | {frames} | {seconds:.1f} | {frames / seconds:.0f} | {peak_mib:.0f} |")


if __name__ == "__main__":
    main()
