"""The coin sorter as a Python user would write it: OpenCV-python to find and crop the coins,
PyTorch running the same TorchScript model, Cyclone DDS Python for transport. The reference
that `coin_sorter_node` is measured against (bench/compare.sh); it does the same job with the
same settings: newest frame only, Hough circles with the node's default coin finder
parameters, the model's crop scale, input size and normalisation, a confidence threshold for
the reject bin, one detections message per frame and one sort command per coin (the node with
tracking:=false and shift_score:=off).

Usage: sorter_reference.py --model M.pt [--threads N] [--node coin_sorter_reference]
Runs until SIGINT/SIGTERM, then writes its per-stage times as JSON (--stats). Run it inside
scripts/netns.sh.
"""
import argparse
import json
import math
import os
import pathlib
import signal
import sys
import time

import cv2
import numpy as np
import torch
from cyclonedds.core import Policy, Qos
from cyclonedds.domain import DomainParticipant
from cyclonedds.pub import DataWriter
from cyclonedds.sub import DataReader
from cyclonedds.topic import Topic
from cyclonedds.util import duration

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tests" / "peers"))
from ros_types import CoinDetection, CoinDetectionArray, CompressedImage, Image, SortCommand  # noqa: E402

# The node's coin finder defaults (src/locate.rs DEFAULT_LOCATE).
MIN_RADIUS, MAX_RADIUS, MAX_SIDE = 12.0, 320.0, 320
CANNY, CIRCULARITY, MIN_SEPARATION, MAX_COINS = 120.0, 0.80, 1.0, 64


def decode(msg):
    """An Image or CompressedImage as an RGB array."""
    if isinstance(msg, CompressedImage):
        bgr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    rows = np.asarray(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    px = rows[:, : msg.width * 3].reshape(msg.height, msg.width, 3)
    return cv2.cvtColor(px, cv2.COLOR_BGR2RGB) if msg.encoding == "bgr8" else px


def locate(rgb):
    """Coin circles (x, y, r) in image pixels, largest first."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    scale = min(1.0, MAX_SIDE / max(h, w))
    if scale < 1.0:
        grey = cv2.resize(grey, (max(1, round(w * scale)), max(1, round(h * scale))),
                          interpolation=cv2.INTER_AREA)
    blurred = cv2.GaussianBlur(grey, (5, 5), 1.5)
    min_r = max(MIN_RADIUS * scale, 1.0)
    max_r = max(MAX_RADIUS * scale, min_r + 1.0)
    max_r = max(min(max_r, min(blurred.shape) / 2.0 + 2.0), min_r + 1.0)
    found = cv2.HoughCircles(blurred, cv2.HOUGH_GRADIENT_ALT, 1.5,
                             max(min_r * 2.0 * MIN_SEPARATION, 1.0), param1=CANNY,
                             param2=CIRCULARITY, minRadius=math.floor(min_r),
                             maxRadius=math.ceil(max_r))
    circles = [] if found is None else [(x / scale, y / scale, r / scale) for x, y, r in found[0]]
    circles = [c for c in circles if MIN_RADIUS * 0.9 <= c[2] <= MAX_RADIUS * 1.1]
    kept = []
    for c in circles:
        if all(math.hypot(k[0] - c[0], k[1] - c[1]) >= MIN_SEPARATION * max(k[2], c[2])
               for k in kept):
            kept.append(c)
    return sorted(kept[:MAX_COINS], key=lambda c: -c[2])


def crops(rgb, circles, crop_scale, size):
    """Square crops around each circle (edges replicated), resized to size x size."""
    h, w = rgb.shape[:2]
    out = np.empty((len(circles), size, size, 3), dtype=np.uint8)
    for i, (x, y, r) in enumerate(circles):
        half = max(r * crop_scale, 1.0)
        x0, y0, side = math.floor(x - half), math.floor(y - half), max(math.ceil(2 * half), 1)
        ix0, iy0 = min(max(x0, 0), w - 1), min(max(y0, 0), h - 1)
        ix1, iy1 = min(max(x0 + side, ix0 + 1), w), min(max(y0 + side, iy0 + 1), h)
        square = cv2.copyMakeBorder(rgb[iy0:iy1, ix0:ix1], max(iy0 - y0, 0),
                                    max(y0 + side - iy1, 0), max(ix0 - x0, 0),
                                    max(x0 + side - ix1, 0), cv2.BORDER_REPLICATE)
        interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        out[i] = cv2.resize(square, (size, size), interpolation=interp)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--node", default="coin_sorter_reference")
    ap.add_argument("--domain", type=int, default=0)
    ap.add_argument("--image-topic", default="/camera/image_raw")
    ap.add_argument("--confidence", type=float, default=0.5)
    ap.add_argument("--reject-bin", default="reject")
    ap.add_argument("--stats", help="write per-stage times (JSON) here at exit")
    args = ap.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    meta = json.load(open(args.model[: -len(".pt")] + ".json"))
    labels, size = meta["labels"], meta["input_size"]
    mean = np.array(meta["mean"], dtype=np.float32) * 255.0
    std = np.array(meta["std"], dtype=np.float32) * 255.0
    model = torch.jit.load(args.model, map_location="cpu").eval()

    dp = DomainParticipant(args.domain)
    camera = Qos(Policy.Reliability.BestEffort, Policy.History.KeepLast(1))
    out_qos = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(100))
    readers = [
        DataReader(dp, Topic(dp, "rt" + args.image_topic, Image), qos=camera),
        DataReader(dp, Topic(dp, "rt" + args.image_topic + "/compressed", CompressedImage),
                   qos=camera),
    ]
    det_writer = DataWriter(dp, Topic(dp, f"rt/{args.node}/detections", CoinDetectionArray),
                            qos=out_qos)
    cmd_writer = DataWriter(dp, Topic(dp, f"rt/{args.node}/sort_commands", SortCommand),
                            qos=out_qos)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    stages = {k: [] for k in ("decode", "locate", "crop_normalise", "forward", "publish", "total")}
    coin_id = 0
    print(f"{args.node} ready", flush=True)
    while not stop:
        newest = None
        for r in readers:
            # take() also returns the invalid samples that announce a writer leaving.
            got = [m for m in r.take(N=16) if isinstance(m, (Image, CompressedImage))]
            if got:
                newest = got[-1]
        if newest is None:
            time.sleep(0.001)
            continue
        t0 = time.perf_counter()
        rgb = decode(newest)
        t1 = time.perf_counter()
        circles = locate(rgb)
        t2 = time.perf_counter()
        batch = crops(rgb, circles, meta["crop_scale"], size)
        x = torch.from_numpy(((batch.astype(np.float32) - mean) / std).transpose(0, 3, 1, 2)
                             .copy())
        t3 = time.perf_counter()
        if circles:
            with torch.inference_mode():
                probs = torch.softmax(model(x)[:, : len(labels)], dim=1)
            conf, cls = probs.max(dim=1)
        t4 = time.perf_counter()
        dets = []
        for i, (cx, cy, r) in enumerate(circles):
            coin_id += 1
            label, c = labels[int(cls[i])], float(conf[i])
            rejected = c < args.confidence
            dets.append(CoinDetection(coin_id=coin_id, label=label, confidence=c,
                                      bin=args.reject_bin if rejected else f"bin_{label}",
                                      rejected=rejected, shift_score=0.0,
                                      out_of_distribution=False, x=cx, y=cy, radius=r))
        det_writer.write(CoinDetectionArray(header=newest.header, detections=dets))
        for d in dets:
            cmd_writer.write(SortCommand(header=newest.header, coin_id=d.coin_id, label=d.label,
                                         bin=d.bin, confidence=d.confidence, frames_seen=1,
                                         x=d.x, y=d.y, radius=d.radius))
        t5 = time.perf_counter()
        for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t5 - t0)):
            stages[k].append(v)
    if args.stats:
        with open(args.stats + ".tmp", "w") as f:
            json.dump(stages, f)
        os.replace(args.stats + ".tmp", args.stats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
