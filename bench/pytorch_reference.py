#!/usr/bin/env python3
"""PyTorch reference for fkp-batch's `bench` command.

The same nets as fkp-batch (Daniel Nouri's net1 and net2), trained on random seeded data of the
tutorial's shapes, timed the same way: seconds per training epoch (median of --repeat epochs after one
warm-up epoch) and inference images per second (forward only, median of --repeat passes after one
warm-up pass) at batch 128 and at batch 1, with the GFLOP/s these mean. A training epoch counts 3x the forward FLOPs, inference 1x.

Prints one JSON object per model on stdout; logs go to stderr.

    python3 bench/pytorch_reference.py [--models net1,net2] [--images 1712] [--threads 2] [--batch1-images 256]
"""

import argparse
import json
import math
import os
import statistics
import sys
import time

# "No allocator churn": glibc's malloc hands every big tensor (conv1's activations of a batch are
# 144 MB) back to the kernel with munmap and maps it again on the next batch, so each batch pays
# millions of page faults; net2 trains ~4x slower that way on 2 cores. These settings keep freed
# memory in the heap. glibc reads them only at start-up, so main() re-executes the script with them
# unless they are already set or --no-malloc-tuning is given.
MALLOC_TUNING = {
    "MALLOC_MMAP_MAX_": "0",                       # never serve allocations with mmap
    "MALLOC_TRIM_THRESHOLD_": str(16 << 30),       # never give the heap's top back
    "MALLOC_TOP_PAD_": str(256 << 20),             # grow the heap in big steps
}

try:
    import torch
    import torch.nn as nn
except ImportError:
    sys.exit("pytorch_reference.py: PyTorch is not installed; see bench/README.md (pip install -r bench/requirements.txt)")

IMAGE_SIDE = 96
OUTPUTS = 30
BATCH = 128


def log(msg):
    print(f"[pytorch_reference] {msg}", file=sys.stderr, flush=True)


def make_net1():
    """9216 -> dense 100 ReLU -> dense 30 (linear)."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(IMAGE_SIDE * IMAGE_SIDE, 100), nn.ReLU(),
        nn.Linear(100, OUTPUTS),
    )


def make_net2():
    """conv32 3x3 -> pool -> conv64 2x2 -> pool -> conv128 2x2 -> pool -> 500 -> 500 -> 30.

    Convolutions valid, stride 1; max-pool 2x2 stride 2 (floor, as Lasagne's default): 96 -> 94 -> 47
    -> 46 -> 23 -> 22 -> 11, so 128*11*11 = 15,488 features enter the first dense layer.
    """
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(128 * 11 * 11, 500), nn.ReLU(),
        nn.Linear(500, 500), nn.ReLU(),
        nn.Linear(500, OUTPUTS),
    )


MODELS = {"net1": make_net1, "net2": make_net2}


def init_lasagne(net):
    """Lasagne's defaults: Glorot-uniform weights, zero biases."""
    for m in net.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)


def forward_macs(net):
    """Multiply-adds of one image's forward pass, counted from the layer shapes."""
    macs = 0
    shape = (1, IMAGE_SIDE, IMAGE_SIDE)  # C, H, W
    for m in net:
        if isinstance(m, nn.Conv2d):
            kh, kw = m.kernel_size
            oh, ow = shape[1] - kh + 1, shape[2] - kw + 1
            macs += oh * ow * m.out_channels * m.in_channels * kh * kw
            shape = (m.out_channels, oh, ow)
        elif isinstance(m, nn.MaxPool2d):
            shape = (shape[0], shape[1] // 2, shape[2] // 2)
        elif isinstance(m, nn.Linear):
            macs += m.in_features * m.out_features
    return macs


def timed(fn, repeat, label=None):
    """fn once as a warm-up, then `repeat` timed runs; the seconds of each (logged with label)."""
    fn()
    times = []
    for i in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        if label:
            log(f"{label} {i + 1}: {times[-1]:.3f} s")
    return times


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="net1,net2", help="comma-separated: net1,net2 (default both)")
    p.add_argument("--images", type=int, default=1712, help="training images per epoch (default 1712)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    p.add_argument("--repeat", type=int, default=3, help="timed epochs / inference passes, median reported (default 3)")
    p.add_argument("--batch1-images", type=int, default=256,
                   help="images predicted one at a time for the batch-1 inference figure, 0 to skip (default 256)")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    p.add_argument("--seed", type=int, default=7, help="seed for data and weights (default 7)")
    p.add_argument("--no-malloc-tuning", action="store_true",
                   help="keep glibc malloc's defaults (the 'untuned' PyTorch: much slower for net2)")
    args = p.parse_args()

    if not args.no_malloc_tuning and sys.platform.startswith("linux") \
            and any(k not in os.environ for k in MALLOC_TUNING):
        env = dict(os.environ)
        for k, v in MALLOC_TUNING.items():
            env.setdefault(k, v)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__)] + sys.argv[1:], env)

    models = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model '{m}' (expected net1 or net2)")
    if args.images < 1 or args.threads < 1 or args.repeat < 1 or args.batch1_images < 0:
        p.error("--images, --threads and --repeat must be at least 1, --batch1-images at least 0")

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    tuned = all(k in os.environ for k in MALLOC_TUNING)
    log(f"torch {torch.__version__}, threads {torch.get_num_threads()}, images {args.images}, batch {BATCH}, "
        f"malloc tuning {'on' if tuned else 'off'}")

    gen = torch.Generator().manual_seed(args.seed)
    n = args.images
    x_all = torch.rand(n, 1, IMAGE_SIDE, IMAGE_SIDE, generator=gen, dtype=torch.float32)
    x_all = x_all.contiguous(memory_format=torch.channels_last)
    y_all = torch.rand(n, OUTPUTS, generator=gen, dtype=torch.float32) * 2 - 1

    for name in models:
        torch.manual_seed(args.seed)
        net = MODELS[name]()
        init_lasagne(net)
        net = net.to(memory_format=torch.channels_last)
        macs = forward_macs(net)
        if name == "net2":
            assert macs == 43_747_752, macs
        flop_per_image = 2.0 * macs
        params = sum(t.numel() for t in net.parameters())
        log(f"{name}: {params:,} parameters, {flop_per_image / 1e6:.1f} MFLOP per image forward")

        opt = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, nesterov=True)
        loss_fn = nn.MSELoss()

        def train_epoch():
            net.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            batches = 0
            for start in range(0, n, BATCH):
                idx = perm[start:start + BATCH]
                xb = x_all.index_select(0, idx).contiguous(memory_format=torch.channels_last)
                yb = y_all.index_select(0, idx)
                opt.zero_grad(set_to_none=False)  # keep gradient buffers: no allocator churn
                loss = loss_fn(net(xb), yb)
                loss.backward()
                opt.step()
                total += loss.item()
                batches += 1
            return total / batches

        def infer_pass():
            net.eval()
            with torch.inference_mode():
                for start in range(0, n, BATCH):
                    out = net(x_all[start:start + BATCH])
            return out

        loss = train_epoch()  # warm-up
        log(f"{name}: warm-up epoch done, loss {loss:.5f}")
        epoch_times = []
        for i in range(args.repeat):
            t0 = time.perf_counter()
            loss = train_epoch()
            epoch_times.append(time.perf_counter() - t0)
            log(f"{name}: epoch {i + 1}: {epoch_times[-1]:.3f} s, loss {loss:.5f}")
        if not math.isfinite(loss):
            log(f"{name}: warning: loss is not finite ({loss}); try a smaller --lr")

        infer_times = timed(infer_pass, args.repeat, f"{name}: inference pass")

        ips1 = None
        n1 = min(args.batch1_images, n)
        if n1 > 0:
            def infer1_pass():
                net.eval()
                with torch.inference_mode():
                    for i in range(n1):
                        out = net(x_all[i:i + 1])
                return out

            ips1 = n1 / statistics.median(timed(infer1_pass, args.repeat))
            log(f"{name}: batch-1 inference: {ips1:.1f} images/s")

        epoch = statistics.median(epoch_times)
        infer = statistics.median(infer_times)
        ips = n / infer
        print(json.dumps({
            "impl": "pytorch",
            "model": name,
            "device": "cpu",
            "threads": args.threads,
            "train_images": n,
            "epoch_seconds": round(epoch, 4),
            "train_gflops": round(3 * flop_per_image * n / epoch / 1e9, 2),
            "infer_images_per_second": round(ips, 1),
            "infer_gflops": round(flop_per_image * ips / 1e9, 2),
            "infer_batch1_images_per_second": None if ips1 is None else round(ips1, 1),
        }), flush=True)


if __name__ == "__main__":
    main()
