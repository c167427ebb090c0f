#!/usr/bin/env python3
"""Trains net2 in PyTorch from exactly fkp-batch's starting point, to tell an engine bug from chance.

Re-implements fkp-batch's generator (xoshiro256** seeded by SplitMix64), its split, its Glorot-uniform
initialisation (same draws, same order, same layout) and its batch order, then trains with Lasagne's
Nesterov update and prints nolearn's table. With the same seed, `fkp-batch train --model net2` must print
nearly the same losses for many epochs: only float rounding differs.

    python3 bench/pytorch_same_start.py --data ../shared/data/fkd/training.csv --epochs 10
"""
import argparse, sys, time
import numpy as np
import torch

M = (1 << 64) - 1

class Xoshiro:
    def __init__(self, seed):
        z = seed & M
        self.s = []
        for _ in range(4):
            z = (z + 0x9E3779B97F4A7C15) & M
            x = z
            x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
            x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M
            self.s.append(x ^ (x >> 31))

    def next(self):
        s0, s1, s2, s3 = self.s
        r = (s1 * 5) & M
        result = ((((r << 7) | (r >> 57)) & M) * 9) & M
        t = (s1 << 17) & M
        s2 ^= s0; s3 ^= s1; s1 ^= s2; s0 ^= s3; s2 ^= t
        s3 = ((s3 << 45) | (s3 >> 19)) & M
        self.s = [s0, s1, s2, s3]
        return result

    def next_float(self):
        return np.float32(self.next() >> 40) * np.float32(1.0 / 16777216.0)

def shuffle(a, rng):
    for i in range(len(a) - 1, 0, -1):
        j = rng.next() % (i + 1)
        a[i], a[j] = a[j], a[i]

def read_csv(path):
    X, Y = [], []
    with open(path) as f:
        f.readline()
        for line in f:
            parts = line.rstrip("\r\n").split(",")
            Y.append([float(v) for v in parts[:30]])
            X.append(np.array(parts[30].split(), dtype=np.float32) / 255)
    return np.stack(X).reshape(-1, 96, 96, 1), (np.array(Y, dtype=np.float32) - 48) / 48

# fkp-batch's parameter order and layouts: conv [k,k,cin,cout], dense [in,out] (NHWC, HWC flatten)
SHAPES = [("conv1", (3, 3, 1, 32)), ("conv2", (2, 2, 32, 64)), ("conv3", (2, 2, 64, 128)),
          ("hidden4", (15488, 500)), ("hidden5", (500, 500)), ("output", (500, 30))]

def init_weights(seed):
    rng = Xoshiro(seed)
    out = {}
    for name, shape in SHAPES:
        if len(shape) == 4:
            fan_in, fan_out = shape[0] * shape[1] * shape[2], shape[3] * shape[0] * shape[1]
        else:
            fan_in, fan_out = shape
        bound = np.sqrt(np.float32(6.0) / np.float32(fan_in + fan_out)).astype(np.float32)
        n = int(np.prod(shape))
        w = np.empty(n, dtype=np.float32)
        for i in range(n):
            w[i] = (rng.next_float() * np.float32(2) - np.float32(1)) * bound
        out[name] = (w.reshape(shape), np.zeros(shape[-1], dtype=np.float32))
        print(f"initialised {name}", file=sys.stderr)
    return out

class Net2(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        def conv(name):
            k, _, cin, cout = w[name][0].shape
            c = torch.nn.Conv2d(cin, cout, k)
            c.weight.data = torch.from_numpy(w[name][0]).permute(3, 2, 0, 1).contiguous()
            c.bias.data = torch.from_numpy(w[name][1])
            return c
        def dense(name):
            i, o = w[name][0].shape
            d = torch.nn.Linear(i, o)
            d.weight.data = torch.from_numpy(w[name][0]).t().contiguous()
            d.bias.data = torch.from_numpy(w[name][1])
            return d
        self.c1, self.c2, self.c3 = conv("conv1"), conv("conv2"), conv("conv3")
        self.h4, self.h5, self.out = dense("hidden4"), dense("hidden5"), dense("output")
        self.pool = torch.nn.MaxPool2d(2)

    def forward(self, x):  # x: N,H,W,C
        x = x.permute(0, 3, 1, 2)
        x = self.pool(torch.relu(self.c1(x)))
        x = self.pool(torch.relu(self.c2(x)))
        x = self.pool(torch.relu(self.c3(x)))
        x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)  # HWC flatten, as fkp-batch
        x = torch.relu(self.h4(x))
        x = torch.relu(self.h5(x))
        return self.out(x)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    X, Y = read_csv(a.data)
    order = list(range(len(X)))
    shuffle(order, Xoshiro(a.seed))
    n_valid = int(len(order) * 0.2)
    tr, va = order[:len(order) - n_valid], order[len(order) - n_valid:]
    Xt, Yt = torch.from_numpy(X[tr]), torch.from_numpy(Y[tr])
    Xv, Yv = torch.from_numpy(X[va]), torch.from_numpy(Y[va])
    net = Net2(init_weights(a.seed))
    vel = [torch.zeros_like(p) for p in net.parameters()]
    rng = Xoshiro((a.seed + 1) & M)
    print("  epoch    train loss    valid loss    train/val    dur")
    for epoch in range(1, a.epochs + 1):
        t0 = time.time()
        idx = list(range(len(tr)))
        shuffle(idx, rng)
        losses = []
        for s in range(0, len(idx), 128):
            b = idx[s:s + 128]
            loss = torch.mean((net(Xt[b]) - Yt[b]) ** 2)
            net.zero_grad()
            loss.backward()
            with torch.no_grad():
                for p, v in zip(net.parameters(), vel):
                    v.mul_(a.momentum).sub_(a.lr * p.grad)
                    p.add_(a.momentum * v - a.lr * p.grad)
            losses.append(loss.item())
        with torch.no_grad():
            tot = sum(torch.sum((net(Xv[s:s + 128]) - Yv[s:s + 128]) ** 2).item() for s in range(0, len(va), 128))
        valid = tot / (len(va) * 30)
        train = sum(losses) / len(losses)
        print(f"{epoch:7d}  {train:12.5f}  {valid:12.5f}  {train / valid:11.5f}  {time.time() - t0:.2f}s", flush=True)

if __name__ == "__main__":
    main()
