"""PyTorch reference throughput for per-sample LoRA gradients and Jacobians on the fixture models.

Run:  /usr/bin/python3 bench/torch_per_sample.py [--threads N] [--min-time S] [--out FILE]

For each model of test/fixtures/torch_models.py (the networks behind the ONNX fixtures, same
seeds), with LoRA r=2, alpha=4 on every nn.Linear, in float32, at batch 1 and 32, measures in
samples/s:
  forward_sps  batched forward pass of base + LoRA, no autograd;
  grad_sps     functorch vmap(grad) of the per-sample softmax cross-entropy w.r.t. all LoRA A/B;
  jac_sps      functorch vmap(jacrev) of the per-sample class probabilities w.r.t. all LoRA A/B.
Each measurement warms up, then repeats for at least --min-time seconds. One JSON object goes to
stdout (the TypeScript benchmark runs this as a subprocess and parses it), a table to stderr.
Build/bench-time only: needs torch 1.13 with functorch.
"""

import argparse
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from functorch import grad, jacrev, vmap
from torch.nn.utils.stateless import functional_call

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "test", "fixtures"))

from torch_models import MODEL_NAMES, build_model, example_input, lora_targets, random_lora, with_lora  # noqa: E402

BATCHES = (1, 32)
SEQ = 7  # transformer sequence length, as in the golden fixtures
WARMUP_CALLS = 3


def samples_per_second(fn, batch, min_time):
    """Warm up, then call fn() until min_time seconds have passed; batch * calls / elapsed."""
    for _ in range(WARMUP_CALLS):
        fn()
    calls = 0
    start = time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_time:
            return batch * calls / elapsed


def bench_model(name, batch, min_time):
    base = build_model(name)
    targets = lora_targets(base)
    model = with_lora(base, targets)
    num_classes = model.num_classes
    gen = torch.Generator().manual_seed(2000 + MODEL_NAMES.index(name))
    lora = random_lora(model, targets, gen)
    x = next(iter(example_input(name, batch, gen, seq=SEQ).values()))
    onehot = F.one_hot(torch.randint(0, num_classes, (batch,), generator=gen), num_classes).float()

    def logits_fn(p, xi):  # one sample, no batch axis
        return functional_call(model, p, (xi.unsqueeze(0),))[0]

    def ce_fn(p, xi, yi):
        return -(torch.log_softmax(logits_fn(p, xi), dim=-1) * yi).sum()

    def probs_fn(p, xi):
        return torch.softmax(logits_fn(p, xi), dim=-1)

    per_sample_grad = vmap(grad(ce_fn), in_dims=(None, 0, 0))
    per_sample_jac = vmap(jacrev(probs_fn), in_dims=(None, 0))

    def forward():
        with torch.no_grad():
            functional_call(model, lora, (x,))

    return {
        "model": name,
        "batch": batch,
        "forward_sps": samples_per_second(forward, batch, min_time),
        "grad_sps": samples_per_second(lambda: per_sample_grad(lora, x, onehot), batch, min_time),
        "jac_sps": samples_per_second(lambda: per_sample_jac(lora, x), batch, min_time),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds per measurement (default 1)")
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated subset")
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if not args.min_time > 0:
        parser.error(f"--min-time must be > 0, got {args.min_time}")
    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODEL_NAMES))
    if unknown:
        parser.error(f"unknown models {unknown}; expected some of {list(MODEL_NAMES)}")

    torch.set_num_threads(args.threads)
    results = [bench_model(m, b, args.min_time) for m in models for b in BATCHES]
    report = {"torch": torch.__version__, "threads": args.threads, "results": results}

    print(f"{'model':12s} {'batch':>5s} {'forward_sps':>12s} {'grad_sps':>10s} {'jac_sps':>10s}", file=sys.stderr)
    for r in results:
        print(f"{r['model']:12s} {r['batch']:5d} {r['forward_sps']:12.0f} {r['grad_sps']:10.0f} "
              f"{r['jac_sps']:10.0f}", file=sys.stderr)
    text = json.dumps(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
