"""Per-sample cost of reading a real-dataset training sample, three ways, in one run:
Pillow decode + convert("RGB") (the reader before), OpenCV decode straight to RGB (the reader
now), and the decoded, downscaled cache (edgeseg.data.cache), each followed by the training warp.

Cityscapes-sized frames (1024x2048, PNG and JPEG) made from the synthetic scenes; crops 256x512
with scale range (0.5, 2.0). Round robin over the methods, median of the rounds.

    python benchmarks/data_decode.py            # writes benchmarks/results/data_decode.{md,json}
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
FRAME, CROP, SAMPLES, ROUNDS = (1024, 2048), (256, 512), 6, 5


def _pillow_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def main() -> None:
    import cv2
    from PIL import Image

    from edgeseg.data import build_dataset
    from edgeseg.data.cache import DownscaledCache
    from edgeseg.data.files import read_rgb
    from edgeseg.data.transforms import TrainTransform
    from edgeseg.validate.environment import describe, environment

    cv2.setNumThreads(1)
    transform = TrainTransform(CROP, scale=(0.5, 2.0))
    scenes = build_dataset("synthetic", "train", size=FRAME, length=SAMPLES)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for fmt, save in (("png", {"compress_level": 6}), ("jpg", {"quality": 90})):
            folder = root / fmt
            (folder / "images/train").mkdir(parents=True)
            (folder / "masks/train").mkdir(parents=True)
            for i in range(SAMPLES):
                sample = scenes[i]
                Image.fromarray(sample.image).save(folder / "images/train" / f"s{i}.{fmt}", **save)
                Image.fromarray(sample.mask).save(folder / "masks/train" / f"s{i}.png")
            (folder / "classes.yaml").write_text("classes: [" + ", ".join(f"c{k}" for k in range(scenes.num_classes)) + "]\n")
            from edgeseg.data.folder import load_folder

            dataset = load_folder(folder, "train")
            cache = DownscaledCache(dataset, root / "cache", crop=CROP, max_scale=2.0)
            for i in range(SAMPLES):
                cache[i]  # fill: the first epoch's cost, reported separately below
            paths = [p for _, p, _ in dataset.pairs]
            methods = {
                "pillow decode + warp": lambda i: transform.geometry(
                    _with_image(dataset, i, _pillow_rgb(paths[i])), np.random.default_rng(i)),
                "opencv decode + warp": lambda i: transform.geometry(
                    _with_image(dataset, i, read_rgb(paths[i])), np.random.default_rng(i)),
                "cache read + warp": lambda i: transform.geometry(cache[i], np.random.default_rng(i)),
            }
            times = {name: [] for name in methods}
            for _ in range(ROUNDS):
                for name, fn in methods.items():
                    start = time.perf_counter()
                    for i in range(SAMPLES):
                        fn(i)
                    times[name].append((time.perf_counter() - start) / SAMPLES * 1e3)
            base = statistics.median(times["pillow decode + warp"])
            for name, values in times.items():
                ms = statistics.median(values)
                rows.append({"format": fmt, "method": name, "ms_per_sample": round(ms, 2),
                             "ratio_to_pillow": round(ms / base, 3)})
    env = environment(threads=1)
    payload = {"frame": list(FRAME), "crop": list(CROP), "samples": SAMPLES, "rounds": ROUNDS,
               "mask_read": "Pillow (palette indices) in every method except the cache",
               "environment": env, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "data_decode.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [f"# Reading a training sample: {FRAME[0]}x{FRAME[1]} frames, {CROP[0]}x{CROP[1]} crops",
             "", f"Machine: {describe(env, ('opencv-python-headless', 'pillow'))}.",
             "", f"One process, OpenCV 1 thread, {SAMPLES} samples x {ROUNDS} rounds round robin, median.",
             "The Pillow and OpenCV rows also decode the label PNG (Pillow: palette indices); the cache",
             "row reads both arrays from one uncompressed .npz at the largest size the scale draws.",
             "", "| format | method | ms / sample | vs Pillow |", "|---|---|---|---|"]
    lines += [f"| {r['format']} | {r['method']} | {r['ms_per_sample']} | {r['ratio_to_pillow']} |" for r in rows]
    (RESULTS / "data_decode.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _with_image(dataset, index, image):
    from edgeseg.data.base import Sample

    mask, _ = dataset._train_ids(dataset.pairs[index][2])
    return Sample(image, mask, dataset.pairs[index][0])


if __name__ == "__main__":
    main()
