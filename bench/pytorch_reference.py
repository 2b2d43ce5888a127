#!/usr/bin/env python3
"""The PyTorch side of fer-lab's benchmark: the same models (every fer-lab model kind, layer for
layer and parameter for parameter), batch, optimizer (Adam, lr 1e-3) and augmentation (hflip 0.5,
rotation ±10°, zoom 0.9–1.1, shift ±10 %) as fer-lab's defaults, on the same data (fer-lab's
imported cache, read directly), in eager PyTorch.

Models (--model; the knobs default to fer-lab's):
  baseline   conv3x3(32, valid) → pool → conv3x3(64, valid) → pool → dense 128 → dropout → dense 7
  compact    blocks of --convs-per-block× conv3x3(same, no bias)-BN-ReLU + max-pool over
             --channels (32,64,128), dense --dense (256) with dropout, dense 7
  residual   a small ResNet: stem conv3x3-BN-ReLU + pool, 3 stages of --depth (2) basic blocks
             at --res-width (32)·(1,2,4) channels, global average pool, dropout, dense 7
  attention  the residual net with an SE or CBAM gate in every block (--attention se|cbam);
  se, cbam   short for attention with that gate
  vgg        the compact family at 64→512 × --width channels (0.25 by default here, the CPU
             size; GPU runs use 1.0), dense --dense (1024,1024)
Like fer-lab, the last convolution of a block runs conv → BN → max-pool → ReLU (pool and ReLU
commute, so the outputs are the same as the usual order), so both sides run the same operations.
Every JSON line carries "params", counted as fer-lab's `bench` counts them (burn's num_params:
the trainable parameters plus batch norm's running mean and variance), and "trainable_params".

Stages (each prints one JSON line: {"side": "pytorch", "stage": ..., "img_s": ..., ...}):
  step      forward + backward + Adam on one fixed batch, median of --steps timed steps
  data      the augmentation pipeline alone on real training images, batched (affine_grid +
            grid_sample, the usual fast way in PyTorch), median per batch
  loop      one full epoch as a training script runs it: shuffle, augment on the CPU, step,
            read the loss every step (loss.item()), then evaluate the validation split
  loop-gpu  --epochs real epochs (default 1) with the whole training set on the device as
            uint8: shuffle (randperm) and augmentation on the device with a device
            generator, loss and correct predictions summed on the device and read once per
            epoch, then the validation split (on the device too); the last epoch is reported,
            all of them in "epoch_seconds"
  eval      forward passes over the validation split without gradients
  ops       what runs in one training step, as `fer-lab bench ops` lists it (no timing): per
            phase (forward, backward, optimizer) every top-level ATen operator and autograd
            node with its input shapes and calls, one JSON line each

--cuda-graph (step and loop-gpu, CUDA only): the training step (forward, loss, backward,
Adam with capturable=True) is captured once as a CUDA graph on static input tensors and
replayed; each batch is copied into the static tensors. loop-gpu then trains whole batches only
(the last partial batch, 28,709 mod batch images, is left out, as drop_last does) and reports
the images it trained; the capture (with its warm-up steps) is timed apart ("capture_seconds").

On CUDA every line also carries "peak_gpu_mb" and "peak_gpu_reserved_mb":
torch.cuda.max_memory_allocated / max_memory_reserved since the peak was reset at the start of
the stage (the model's weights are already on the device then and count).

--precision bf16: bfloat16 mixed precision, as fer-lab's `precision = "bf16"` runs it: the
model's forward under torch.autocast(device, dtype=torch.bfloat16) (autocast's weight cache off,
so a CUDA graph can capture it), the logits cast back to float32, weights and Adam in float32.

--model and --batch accept comma lists for the step stage (e.g. --model baseline,vgg --batch
64,256): one line per model and batch, in one process, the GPU memory peak reset and the model
freed between them; a configuration that fails prints a line with "error" and the rest go on.

Usage: python3 bench/pytorch_reference.py --model baseline --batch 64 --threads 2 --stage step
       python3 bench/pytorch_reference.py --model vgg --width 1.0 --device cuda:0 --stage step --cuda-graph
       python3 bench/pytorch_reference.py --device cuda:0 --stage loop-gpu --epochs 2 --cuda-graph
"""

import argparse
import gc
import json
import math
import os
import resource
import statistics
import sys
import time
import traceback
import warnings

warnings.filterwarnings("ignore", message=".*NumPy.*")  # torch without numpy warns on import
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

MAGIC = b"FERLAB\x00\x01"
SIDE = 48
CLASSES = 7


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


# ---------------------------------------------------------------------------------------------
# The models: src/model/{baseline,compact,vgg,residual,blocks}.rs, layer for layer.


class Baseline(nn.Module):
    """fer-lab's `baseline` (src/model/baseline.rs): conv3x3(32, valid) → pool → ReLU →
    conv3x3(64, valid) → pool → ReLU → dense 128 → ReLU → dropout → dense 7. 839,047 params."""

    def __init__(self, dropout=0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3)
        self.conv2 = nn.Conv2d(32, 64, 3)
        self.fc1 = nn.Linear(64 * 10 * 10, 128)
        self.drop = nn.Dropout(dropout)
        self.fc2 = nn.Linear(128, CLASSES)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(self.drop(x))


class ConvBn(nn.Module):
    """blocks.rs `ConvBn`: conv k×k ("same" padding at stride 1, k/2 at stride 2; no bias when
    batch norm follows) → batch norm (optional) → ReLU (optional)."""

    def __init__(self, c_in, c_out, kernel, stride=1, batch_norm=True, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(c_out) if batch_norm else None
        self.relu = relu

    def normalized(self, x):
        x = self.conv(x)
        return self.bn(x) if self.bn is not None else x

    def activate(self, x):
        return F.relu(x) if self.relu else x

    def forward(self, x):
        return self.activate(self.normalized(x))

    def forward_pooled(self, x):
        """pool(forward(x)) as fer-lab computes it: conv → BN → 2×2 max-pool → ReLU."""
        return self.activate(F.max_pool2d(self.normalized(x), 2))


class Compact(nn.Module):
    """fer-lab's `compact` (src/model/compact.rs) and, at 64→512 × width, its `vgg`."""

    def __init__(self, channels=(32, 64, 128), convs_per_block=2, batch_norm=True, dense=(256,), dropout=0.5):
        super().__init__()
        self.convs_per_block = convs_per_block
        convs, c_in = [], 1
        for c in channels:
            for _ in range(convs_per_block):
                convs.append(ConvBn(c_in, c, 3, 1, batch_norm, True))
                c_in = c
        self.convs = nn.ModuleList(convs)
        layers, d_in = [], c_in * (SIDE >> len(channels)) ** 2
        for d in dense:
            layers.append(nn.Linear(d_in, d))
            d_in = d
        self.dense = nn.ModuleList(layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(d_in, CLASSES)

    def forward(self, x):
        k = self.convs_per_block
        for start in range(0, len(self.convs), k):
            block = self.convs[start : start + k]
            for conv in block[:-1]:
                x = conv(x)
            x = block[-1].forward_pooled(x)
        x = x.flatten(1)
        for layer in self.dense:
            x = self.drop(F.relu(layer(x)))
        if len(self.dense) == 0:
            x = self.drop(x)
        return self.head(x)


def vgg_channels(width):
    """src/model/vgg.rs: 64, 128, 256, 512 × width, rounded, at least 1."""
    return [max(1, int(math.floor(c * width + 0.5))) for c in (64.0, 128.0, 256.0, 512.0)]


def reduced(channels):
    """Hidden units of an attention bottleneck (blocks.rs)."""
    return max(channels // 8, 4)


class SqueezeExcite(nn.Module):
    """blocks.rs `SqueezeExcite`: global average → dense c/8 → ReLU → dense c → sigmoid gate."""

    def __init__(self, channels):
        super().__init__()
        self.fc1 = nn.Linear(channels, reduced(channels))
        self.fc2 = nn.Linear(reduced(channels), channels)

    def forward(self, x):
        b, c = x.shape[:2]
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * gate.reshape(b, c, 1, 1)


class Cbam(nn.Module):
    """blocks.rs `Cbam`: a channel gate from the average- and max-pooled features through one
    shared MLP, then a spatial gate from a 7×7 convolution (with bias) over the channel mean and
    max."""

    def __init__(self, channels):
        super().__init__()
        self.fc1 = nn.Linear(channels, reduced(channels))
        self.fc2 = nn.Linear(reduced(channels), channels)
        self.spatial = nn.Conv2d(2, 1, 7, padding=3)

    def mlp(self, x):
        return self.fc2(F.relu(self.fc1(x)))

    def forward(self, x):
        b, c = x.shape[:2]
        avg = x.mean((2, 3))
        mx = x.flatten(2).amax(2)
        x = x * torch.sigmoid(self.mlp(avg) + self.mlp(mx)).reshape(b, c, 1, 1)
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return x * torch.sigmoid(self.spatial(pooled))


class BasicBlock(nn.Module):
    """residual.rs `BasicBlock`: conv-BN-ReLU → conv-BN (→ attention gate) + shortcut (identity,
    or 1×1 conv-BN when the stride or the width changes) → ReLU."""

    def __init__(self, c_in, c_out, stride, attention=None):
        super().__init__()
        self.conv1 = ConvBn(c_in, c_out, 3, stride, True, True)
        self.conv2 = ConvBn(c_out, c_out, 3, 1, True, False)
        self.shortcut = ConvBn(c_in, c_out, 1, stride, True, False) if stride != 1 or c_in != c_out else None
        self.attention = {None: None, "se": SqueezeExcite, "cbam": Cbam}[attention]
        if self.attention is not None:
            self.attention = self.attention(c_out)

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        if self.attention is not None:
            out = self.attention(out)
        skip = self.shortcut(x) if self.shortcut is not None else x
        return F.relu(out + skip)


class ResNet(nn.Module):
    """fer-lab's `residual` and `attention` (src/model/residual.rs)."""

    def __init__(self, width=32, depth=2, attention=None, dropout=0.5):
        super().__init__()
        self.stem = ConvBn(1, width, 3, 1, True, True)
        blocks, c_in = [], width
        for stage, mult in enumerate((1, 2, 4)):
            c = width * mult
            for i in range(depth):
                blocks.append(BasicBlock(c_in, c, 2 if stage > 0 and i == 0 else 1, attention))
                c_in = c
        self.blocks = nn.Sequential(*blocks)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(width * 4, CLASSES)

    def forward(self, x):
        x = self.blocks(self.stem.forward_pooled(x))
        return self.head(self.drop(x.mean((2, 3))))


def ints(text):
    return [int(v) for v in text.split(",") if v.strip()] if text is not None else None


def model_for(name, args):
    """The model `name` (one of MODELS) at the knobs of `args`, and its knobs for the report."""
    if name == "baseline":
        return Baseline(args.dropout), {}
    if name == "compact":
        channels = ints(args.channels) or [32, 64, 128]
        dense = ints(args.dense) if args.dense is not None else [256]
        knobs = {"channels": channels, "convs_per_block": args.convs_per_block, "batch_norm": True, "dense": dense}
        return Compact(channels, args.convs_per_block, True, dense, args.dropout), knobs
    if name == "vgg":
        width = args.width if args.width is not None else 0.25
        dense = ints(args.dense) if args.dense is not None else [1024, 1024]
        return Compact(vgg_channels(width), 2, True, dense, args.dropout), {"width": width, "dense": dense}
    if name in ("residual", "attention", "se", "cbam"):
        width = args.res_width
        attention = {"residual": None, "attention": args.attention, "se": "se", "cbam": "cbam"}[name]
        knobs = {"width": width, "depth": args.depth}
        if attention:
            knobs["attention"] = attention
        return ResNet(width, args.depth, attention, args.dropout), knobs
    sys.exit(f"--model {name}: one of {', '.join(MODELS)}")


MODELS = ["baseline", "compact", "residual", "attention", "se", "cbam", "vgg"]


def count_params(model):
    """Parameters as fer-lab's `bench` counts them (burn's num_params): the trainable ones plus
    batch norm's running mean and variance (burn keeps those as module state and counts them;
    PyTorch's num_batches_tracked has no burn counterpart)."""
    trainable = sum(p.numel() for p in model.parameters())
    running = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return trainable + running, trainable


# ---------------------------------------------------------------------------------------------
# Data and reports.


def augment(images, gen):
    """fer-lab's default augmentation on a uint8 batch → float [0, 1] batch, on the batch's
    device (`gen` must be a generator of that device)."""
    x = images.float() / 255.0
    n, dev = x.shape[0], x.device
    flip = torch.where(torch.rand(n, generator=gen, device=dev) < 0.5, -1.0, 1.0)
    angle = (torch.rand(n, generator=gen, device=dev) * 2 - 1) * math.radians(10)
    zoom = 1 + (torch.rand(n, generator=gen, device=dev) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=gen, device=dev) * 2 - 1) * 0.1 * 2  # grid units span 2
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


def reset_gpu_peak(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def gpu_process_mb():
    """What nvidia-smi says this process holds (CUDA context and caching allocator included):
    the measure fer-lab's `bench stage` reports, so both sides compare like with like."""
    import subprocess

    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip() == str(os.getpid()):
            return int(mib.strip())
    return None


def report(stage, args, seconds, images, extra=None):
    line = {
        "side": "pytorch",
        "stage": stage,
        "model": args.model,
        "knobs": args.knobs,
        "params": args.params,
        "trainable_params": args.trainable_params,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "img_s": images / seconds if seconds > 0 else None,
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "torch": torch.__version__,
        "device": str(args.torch_device),
        "precision": args.precision,
    }
    if stage in ("step", "loop-gpu"):
        line["cuda_graph"] = bool(args.cuda_graph)
    if args.torch_device.type == "cuda":
        line["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(args.torch_device) / 2**20, 1)
        line["peak_gpu_reserved_mb"] = round(torch.cuda.max_memory_reserved(args.torch_device) / 2**20, 1)
        line["gpu"] = torch.cuda.get_device_name(args.torch_device)
        held = gpu_process_mb()
        if held is not None:
            line["gpu_process_mb"] = held
    line.update(extra or {})
    print(json.dumps(line), flush=True)


def sync(device):
    """Waits for queued GPU work, so a timer measures it (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# CUDA graphs: the whole training step captured once, replayed per batch.


class GraphStep:
    """One training step (forward, cross-entropy, backward, Adam) captured as a CUDA graph, as
    in PyTorch's whole-network capture example (docs/notes/cuda.html#whole-network-capture):
    static input tensors, warm-up iterations on a side stream before the capture, gradients
    allocated inside the capture (zero_grad(set_to_none=True) before it), Adam with
    capturable=True so its step counter lives on the device. `run(x, y)` copies a batch into the
    static inputs and replays; `loss` and `out` are the static outputs of the last replay."""

    def __init__(self, model, opt, x, y, warmup=3):
        self.x = x.clone()
        self.y = y.clone()
        self.model, self.opt = model, opt
        side = torch.cuda.Stream(device=x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(self.x), self.y)
                loss.backward()
                opt.step()
        torch.cuda.current_stream(x.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self.out = model(self.x)
            self.loss = F.cross_entropy(self.out, self.y)
            self.loss.backward()
            opt.step()

    def run(self, x=None, y=None):
        if x is not None:
            self.x.copy_(x, non_blocking=True)
            self.y.copy_(y, non_blocking=True)
        self.graph.replay()


def check_cuda_graph(args):
    if not args.cuda_graph:
        return
    if args.stage not in ("step", "loop-gpu"):
        sys.exit(f"--cuda-graph: only the step and loop-gpu stages capture a graph, not {args.stage}")
    if args.torch_device.type != "cuda":
        sys.exit(
            f"--cuda-graph needs a CUDA device (--device cuda:N): CUDA graphs are a CUDA feature, "
            f"and --device {args.device} is not one"
        )


def adam(model, capturable):
    if capturable:
        return torch.optim.Adam(model.parameters(), lr=1e-3, capturable=True)
    return torch.optim.Adam(model.parameters(), lr=1e-3)


# ---------------------------------------------------------------------------------------------
# Stages.


def stage_step(args, model, train):
    dev = args.torch_device
    opt = adam(model, args.cuda_graph)
    gen = torch.Generator().manual_seed(1)
    idx = torch.randperm(train[0].shape[0], generator=gen)[: args.batch]
    x = (train[0][idx].float() / 255.0).to(dev)
    y = train[1][idx].to(dev)
    times = []
    model.train()
    extra = {}
    if args.cuda_graph:
        t = time.perf_counter()
        step = GraphStep(model, opt, x, y)
        sync(dev)
        extra["capture_seconds"] = time.perf_counter() - t
        for i in range(args.warmup + args.steps):
            t = time.perf_counter()
            step.run()
            step.loss.item()  # the same synchronisation as the eager step
            sync(dev)
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
    else:
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
    report("step", args, median, args.batch, {"median_ms": median * 1e3, **extra})


def stage_ops(args, model, train):
    """What PyTorch runs in one training step, as `fer-lab bench ops` lists it: per phase
    (forward, backward, optimizer) every top-level ATen operator and every autograd node, with
    input shapes and calls, as one JSON line each."""
    from torch.profiler import ProfilerActivity, profile

    dev = args.torch_device
    opt = adam(model, False)
    gen = torch.Generator().manual_seed(1)
    idx = torch.randperm(train[0].shape[0], generator=gen)[: args.batch]
    x = (train[0][idx].float() / 255.0).to(dev)
    y = train[1][idx].to(dev)
    model.train()
    for _ in range(2):  # warm-up: lazy state (Adam's moments) is created outside the trace
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    state = {}
    phases = [
        ("forward", lambda: state.update(loss=F.cross_entropy(model(x), y))),
        ("backward", lambda: state["loss"].backward()),
        ("optimizer", opt.step),
    ]
    node_prefix = "autograd::engine::evaluate_function: "
    for phase, run in phases:
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            run()
        counts = {}
        for e in prof.events():
            node = e.name.startswith(node_prefix)
            if e.cpu_parent is not None and not node:
                continue
            name = e.name[len(node_prefix):] if node else e.name
            shapes = " ".join("[" + ",".join(map(str, s)) + "]" for s in e.input_shapes if s)
            key = ("autograd node" if node else "aten op", name, shapes)
            counts[key] = counts.get(key, 0) + 1
        for (kind, name, shapes), calls in counts.items():
            line = {"side": "pytorch", "stage": "ops", "model": args.model, "batch": args.batch,
                    "phase": phase, "kind": kind, "op": name, "input_shapes": shapes, "calls": calls}
            print(json.dumps(line), flush=True)


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


def evaluate_on_device(model, val_x, val_y, batch):
    """Validation accuracy with the split already on the device; one read-back at the end."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=val_x.device)
    with torch.no_grad():
        for start in range(0, val_x.shape[0], batch):
            x = val_x[start : start + batch].float() / 255.0
            correct += (model(x).argmax(1) == val_y[start : start + batch]).sum()
    model.train()
    return correct.item() / val_x.shape[0]


def stage_loop_gpu(args, model, train, val):
    """Real epochs with everything on the device: no host transfer and no read-back per step."""
    dev = args.torch_device
    t0 = time.perf_counter()
    train_x, train_y = train[0].to(dev), train[1].to(dev)  # uint8 images, int64 labels
    val_x, val_y = val[0].to(dev), val[1].to(dev)
    sync(dev)
    upload_seconds = time.perf_counter() - t0
    n, batch = train_x.shape[0], args.batch
    gen = torch.Generator(device=dev).manual_seed(1)
    opt = adam(model, args.cuda_graph)
    model.train()
    extra = {"upload_seconds": upload_seconds}
    step = None
    if args.cuda_graph:
        if n < batch:
            sys.exit(f"loop-gpu --cuda-graph: {n} training images make no whole batch of {batch}")
        # Captured on the first batch of a fixed draw; the warm-up steps train on it, as any
        # script's warm-up does before the epoch starts.
        t = time.perf_counter()
        first = torch.randperm(n, generator=gen, device=dev)[:batch]
        step = GraphStep(model, opt, augment(train_x[first], gen), train_y[first])
        sync(dev)
        extra["capture_seconds"] = time.perf_counter() - t
    last = n - n % batch if args.cuda_graph else n  # whole batches only in a graph
    epochs = []
    for _ in range(args.epochs):
        sync(dev)
        t = time.perf_counter()
        order = torch.randperm(n, generator=gen, device=dev)
        loss_sum = torch.zeros((), device=dev)
        correct = torch.zeros((), dtype=torch.long, device=dev)
        for start in range(0, last, batch):
            idx = order[start : start + batch]
            x = augment(train_x[idx], gen)
            y = train_y[idx]
            if step is not None:
                step.run(x, y)
                out, loss = step.out, step.loss
            else:
                opt.zero_grad(set_to_none=True)
                out = model(x)
                loss = F.cross_entropy(out, y)
                loss.backward()
                opt.step()
            loss_sum += loss.detach() * y.shape[0]
            correct += (out.detach().argmax(1) == y).sum()
        train_loss, train_acc = loss_sum.item() / last, correct.item() / last  # the one read-back
        train_seconds = time.perf_counter() - t
        acc = evaluate_on_device(model, val_x, val_y, batch)
        seconds = time.perf_counter() - t
        epochs.append(
            {
                "seconds": seconds,
                "train_seconds": train_seconds,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_acc": acc,
            }
        )
    e = epochs[-1]
    extra.update(
        {
            "epochs": args.epochs,
            "train_images": last,
            "train_seconds": e["train_seconds"],
            "train_img_s": last / e["train_seconds"],
            "train_loss": e["train_loss"],
            "train_acc": e["train_acc"],
            "val_acc": e["val_acc"],
            "epoch_seconds": [round(x["seconds"], 4) for x in epochs],
        }
    )
    report("loop-gpu", args, e["seconds"], last, extra)


# ---------------------------------------------------------------------------------------------


def autocast_forward(forward, device):
    """`forward` in bf16 mixed precision, its output back in float32."""

    def mixed(*inputs):
        with torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False):
            return forward(*inputs).float()

    return mixed


def run_one(args, name, batch, train, val):
    """Builds model `name` and runs the stage at `batch`; prints one JSON line."""
    args.model, args.batch = name, batch
    torch.manual_seed(1)
    model, args.knobs = model_for(name, args)
    args.params, args.trainable_params = count_params(model)
    model = model.to(args.torch_device)
    if args.precision == "bf16":
        model.forward = autocast_forward(model.forward, args.torch_device)
    reset_gpu_peak(args.torch_device)
    if args.stage == "step":
        stage_step(args, model, train)
    elif args.stage == "data":
        stage_data(args, train)
    elif args.stage == "eval":
        stage_eval(args, model, val)
    elif args.stage == "loop-gpu":
        stage_loop_gpu(args, model, train, val)
    elif args.stage == "ops":
        stage_ops(args, model, train)
    else:
        stage_loop(args, model, train, val)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="baseline", help=f"{', '.join(MODELS)} (a comma list for --stage step)")
    p.add_argument(
        "--width", type=float, default=None, help="vgg: channel scale (default 0.25, the CPU size; GPU runs use 1.0)"
    )
    p.add_argument("--res-width", type=int, default=32, help="residual/attention: channels of the first stage")
    p.add_argument("--depth", type=int, default=2, help="residual/attention: basic blocks per stage")
    p.add_argument("--attention", default="se", choices=["se", "cbam"], help="the gate of --model attention")
    p.add_argument("--channels", default=None, help="compact: channels per block (default 32,64,128)")
    p.add_argument("--convs-per-block", type=int, default=2, help="compact: convolutions per block")
    p.add_argument("--dense", default=None, help="compact/vgg: hidden dense sizes (default 256 / 1024,1024)")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--batch", default="64", help="batch size (a comma list for --stage step)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--epochs", type=int, default=1, help="loop-gpu: epochs to train (the last is reported)")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--stage", default="step", choices=["step", "data", "loop", "loop-gpu", "eval", "ops"])
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"], help="bf16: mixed precision (autocast)")
    p.add_argument("--cuda-graph", action="store_true", help="step, loop-gpu: capture the training step as a CUDA graph")
    p.add_argument("--data", default="data/fer2013", help="a fer-lab cache (fer-lab data import)")
    p.add_argument(
        "--device", default="cpu", help="cpu or cuda:N (the loop stage augments on the CPU, as fer-lab's loader)"
    )
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    args.torch_device = torch.device(args.device)
    if args.torch_device.type == "cuda":
        if not torch.cuda.is_available():
            sys.exit(f"--device {args.device}: this torch sees no CUDA GPU")
        if args.torch_device.index is None:
            args.torch_device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(args.torch_device)  # graph capture and streams use the current device
    check_cuda_graph(args)
    models = [m.strip() for m in args.model.split(",") if m.strip()]
    try:
        batches = ints(args.batch)
    except ValueError:
        sys.exit(f"--batch {args.batch}: a size or a comma list of sizes")
    if not models or not batches or min(batches) < 1 or args.steps < 1 or args.warmup < 0 or args.epochs < 1:
        sys.exit("--model, --batch (≥ 1), --steps (≥ 1), --warmup (≥ 0) and --epochs (≥ 1) need values")
    for m in models:
        if m not in MODELS:
            sys.exit(f"--model {m}: one of {', '.join(MODELS)}")
    if (len(models) > 1 or len(batches) > 1) and args.stage != "step":
        sys.exit("lists of --model or --batch are for --stage step; other stages measure one at a time")
    train = read_split(args.data, "train")
    val = read_split(args.data, "val")
    if len(models) == 1 and len(batches) == 1:
        run_one(args, models[0], batches[0], train, val)
        return
    failed = 0
    for name in models:
        for batch in batches:
            try:
                run_one(args, name, batch, train, val)
            except Exception as e:  # one failure (out of memory, a capture error) spares the rest
                failed += 1
                traceback.print_exc(file=sys.stderr)
                line = {"side": "pytorch", "stage": args.stage, "model": name, "batch": batch,
                        "cuda_graph": bool(args.cuda_graph), "error": f"{type(e).__name__}: {e}"[:300]}
                print(json.dumps(line), flush=True)
            gc.collect()
            if args.torch_device.type == "cuda":
                torch.cuda.empty_cache()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
