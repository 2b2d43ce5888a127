#!/usr/bin/env python3
"""The PyTorch side of fer-lab's benchmark: the same models, batch, optimizer (Adam, lr 1e-3)
and augmentation (hflip 0.5, rotation ±10°, zoom 0.9–1.1, shift ±10 %) as fer-lab's defaults,
on the same data (fer-lab's imported cache, read directly), in eager PyTorch.

Stages (each prints one JSON line: {"side": "pytorch", "stage": ..., "img_s": ..., ...}):
  step  forward + backward + Adam on one fixed batch, median of --steps timed steps
  data  the augmentation pipeline alone on real training images, batched (affine_grid +
        grid_sample, the usual fast way in PyTorch), median per batch
  loop  one full epoch as a training script runs it: shuffle, augment, step, read the loss
        every step (loss.item()), then evaluate the validation split
  eval  forward passes over the validation split without gradients

Usage: python3 bench/pytorch_reference.py --model baseline --batch 64 --threads 2 --stage step
"""

import argparse
import json
import math
import os
import resource
import statistics
import sys
import time
import warnings

warnings.filterwarnings("ignore", message=".*NumPy.*")  # torch without numpy warns on import
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MAGIC = b"FERLAB\x00\x01"


def read_split(cache, split):
    with open(os.path.join(cache, f"{split}.bin"), "rb") as f:
        data = f.read()
    if data[:8] != MAGIC:
        sys.exit(f"{cache}/{split}.bin: not a fer-lab cache (import it with `fer-lab data import`)")
    n = int.from_bytes(data[8:12], "little")
    buf = bytearray(data)
    labels = torch.frombuffer(buf, dtype=torch.uint8, count=n, offset=12).long()
    pixels = torch.frombuffer(buf, dtype=torch.uint8, count=n * 2304, offset=12 + n)
    return pixels.reshape(n, 1, 48, 48).clone(), labels


class Baseline(nn.Module):
    """fer-lab's `baseline`: conv3x3(32, valid) → pool → conv3x3(64, valid) → pool → dense 128 →
    dropout → dense 7."""

    def __init__(self, dropout=0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(64 * 10 * 10, 128)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(128, 7)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(self.drop(x))


class Vgg(nn.Module):
    """fer-lab's `vgg`: 4 stages of 2× conv3x3(same)-BN-ReLU + max-pool at 64→512 × width,
    dense [1024, 1024] with dropout, dense 7."""

    def __init__(self, width=1.0, dense=(1024, 1024), dropout=0.5):
        super().__init__()
        layers, c_in = [], 1
        for c in (64, 128, 256, 512):
            c = max(1, round(c * width))
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
                c_in = c
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        head, d_in = [], c_in * 3 * 3
        for d in dense:
            head += [nn.Linear(d_in, d), nn.ReLU(), nn.Dropout(dropout)]
            d_in = d
        self.head = nn.Sequential(*head, nn.Linear(d_in, 7))

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def model_for(name, width):
    if name == "baseline":
        return Baseline()
    if name == "vgg":
        return Vgg(width)
    sys.exit(f"--model {name}: the reference has baseline and vgg")


def augment(images, gen):
    """fer-lab's default augmentation on a uint8 batch → float [0, 1] batch."""
    x = images.float() / 255.0
    n = x.shape[0]
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    zoom = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.1 * 2  # grid units span 2
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, shift[:, 0]], 1),
            torch.stack([sin * flip, cos, shift[:, 1]], 1),
        ],
        1,
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(stage, args, seconds, images, extra=None):
    line = {
        "side": "pytorch",
        "stage": stage,
        "model": args.model,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "img_s": images / seconds if seconds > 0 else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "torch": torch.__version__,
        "device": str(args.torch_device),
    }
    line.update(extra or {})
    print(json.dumps(line), flush=True)


def sync(device):
    """Waits for queued GPU work, so a timer measures it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stage_step(args, model, train):
    dev = args.torch_device
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    idx = torch.randperm(train[0].shape[0], generator=gen)[: args.batch]
    x = (train[0][idx].float() / 255.0).to(dev)
    y = train[1][idx].to(dev)
    times = []
    model.train()
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        loss.item()  # the synchronisation a real loop has
        sync(dev)
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    median = statistics.median(times)
    report("step", args, median, args.batch, {"median_ms": median * 1e3})


def stage_data(args, train):
    gen = torch.Generator().manual_seed(1)
    n = train[0].shape[0]
    times = []
    for i in range(args.warmup + args.steps):
        t = time.perf_counter()
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        augment(train[0][idx], gen)
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    median = statistics.median(times)
    report("data", args, median, args.batch, {"median_ms": median * 1e3})


def evaluate(model, val, batch, dev):
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, val[0].shape[0], batch):
            x = (val[0][start : start + batch].float() / 255.0).to(dev)
            y = val[1][start : start + batch].to(dev)
            correct += (model(x).argmax(1) == y).sum().item()
    return correct / val[0].shape[0]


def stage_eval(args, model, val):
    evaluate(model, val, args.batch, args.torch_device)  # warm-up
    t = time.perf_counter()
    evaluate(model, val, args.batch, args.torch_device)
    seconds = time.perf_counter() - t
    report("eval", args, seconds, val[0].shape[0])


def stage_loop(args, model, train, val):
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(1)
    n = train[0].shape[0]
    t = time.perf_counter()
    model.train()
    order = torch.randperm(n, generator=gen)
    total, correct, loss_sum = 0, 0, 0.0
    dev = args.torch_device
    for start in range(0, n, args.batch):
        idx = order[start : start + args.batch]
        x = augment(train[0][idx], gen).to(dev)
        y = train[1][idx].to(dev)
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(idx)
        correct += (out.argmax(1) == y).sum().item()
        total += len(idx)
    train_seconds = time.perf_counter() - t
    acc = evaluate(model, val, args.batch, dev)
    seconds = time.perf_counter() - t
    report(
        "loop",
        args,
        seconds,
        n,
        {
            "train_seconds": train_seconds,
            "train_img_s": n / train_seconds,
            "train_loss": loss_sum / total,
            "val_acc": acc,
        },
    )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="baseline")
    p.add_argument("--width", type=float, default=0.25, help="vgg width (fer-lab bench uses 0.25 on CPU)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--stage", default="step", choices=["step", "data", "loop", "eval"])
    p.add_argument("--data", default="data/fer2013", help="a fer-lab cache (fer-lab data import)")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N (augmentation stays on the CPU, as fer-lab's)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    args.torch_device = torch.device(args.device)
    if args.torch_device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"--device {args.device}: this torch sees no CUDA GPU")
    train = read_split(args.data, "train")
    val = read_split(args.data, "val")
    model = model_for(args.model, args.width).to(args.torch_device)
    if args.stage == "step":
        stage_step(args, model, train)
    elif args.stage == "data":
        stage_data(args, train)
    elif args.stage == "eval":
        stage_eval(args, model, val)
    else:
        stage_loop(args, model, train, val)


if __name__ == "__main__":
    main()
