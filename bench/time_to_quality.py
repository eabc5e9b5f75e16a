#!/usr/bin/python3
"""Time to quality: loom's char_lm and its PyTorch twin trained to the same held-out loss.

The twin matches char_lm step for step:
- weights: `char_lm --steps 0 --checkpoint init.h5` writes char_lm's own initialization
  (the same seed and flags as the timed run), which tests/char_lm_torch.py loads into
  an nn.Embedding -> nn.LSTM (GRU, RNN) stack -> nn.Linear of the same shapes;
- data: the text read as char_lm reads it (a file, or a directory's extension-less files
  in byte order), the vocabulary taken from the checkpoint, the last 5% held out, and
  the training windows cut as loom_app_stream_window does: --batch streams, stream g
  starting at g * stream_len, --seq characters per window, the state carried between
  windows (detached: truncated BPTT) and reset when the streams wrap. No random numbers
  are drawn (dropout is 0), so no generator needs reproducing;
- update: the mean cross-entropy over the window, clipping by global norm (--clip), and
  the optimizer (adam or adamw) with the hyper-parameters char_lm wrote in
  /optimizer/hyper (lr, betas, eps, weight decay) at a constant rate;
- held-out loss: loom_app_heldout_nll's layout (min(batch, pairs / seq) streams over the
  held-out text, windows of --seq, the state carried from zero), every --eval-every steps.

Time to the --target held-out loss is each side's training time: the wall-clock of its
steps, evaluations and start-up excluded (loom's from its --log rows, which count
training time only; torch's timed around each step). Evaluation time and the time from
launch are shown beside it. loom runs at its default threads; PyTorch in the set-ups of
bench/torch_ref.py (Debian's pthread OpenBLAS at torch's default threads, the OpenMP
OpenBLAS at 2 threads, each with glibc's malloc and with tcmalloc), and the fastest
counts. Each side stops once it reaches the target (--full: runs all --steps).

--check proves the twin (tests/time_to_quality.cmake runs it on a small model): the
held-out loss before training and the first step's loss (both at the initial weights)
agree to 1e-4, then each step's training loss to --tol (relative, 1e-5) and the held-out
loss after each step to 1e-4 (char_lm prints it to 4 decimals). Exit 1 if not, 77 if
torch or h5py cannot be imported.

Usage: /usr/bin/python3 bench/time_to_quality.py [--char-lm build/release/examples/char_lm] [--target 2.1]"""
import argparse
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(1, os.path.join(ROOT, "tests"))  # char_lm_torch, shared with tests/torch_interop.py
from torch_ref import SETUPS, loaded_blas, loaded_malloc, setup_env  # noqa: E402  (bench/, this script's folder)

HELDOUT = re.compile(r"^step (\d+): held-out loss ([0-9.]+|nan|inf) nats/char")
PROGRESS = re.compile(r"^step (\d+)/\d+ \|")


# ---------------------------------------------------------------- data, as char_lm sees it

def read_text(path):
    """loom_app_read_text: a file, or a directory's regular files without '.' in their names, in byte order."""
    if not os.path.isdir(path):
        return open(path, "rb").read()
    names = sorted((n for n in os.listdir(path) if "." not in n), key=os.fsencode)
    if len(names) > 1024:
        sys.exit(f"--data {path}: more than 1024 files (char_lm refuses it)")
    paths = [os.path.join(path, n) for n in names]
    return b"".join(open(p, "rb").read() for p in paths if os.path.isfile(p))


class Corpus:
    """The text encoded with the checkpoint's vocabulary: training ids, held-out ids, stream length."""

    def __init__(self, raw, vocab, batch):
        import numpy as np
        import torch
        if bytes(sorted(set(raw))) != vocab:
            sys.exit("the checkpoint's vocabulary is not the text's bytes: the text changed, or char_lm reads it otherwise")
        lut = np.full(256, -1, dtype=np.int64)
        lut[np.frombuffer(vocab, dtype=np.uint8)] = np.arange(len(vocab))
        ids = torch.from_numpy(lut[np.frombuffer(raw, dtype=np.uint8)])
        nvalid = len(raw) // 20
        self.ntrain = len(raw) - nvalid
        self.train, self.valid = ids[:self.ntrain], ids[self.ntrain:]
        self.stream_len = (self.ntrain - 1) // batch


class Streams:
    """loom_app_stream_window: window k of stream g reads train[g * stream_len + cursor + s], s < T."""

    def __init__(self, corpus, T, B):
        import torch
        self.ids, self.len, self.T = corpus.train, corpus.stream_len, T
        self.pos = torch.arange(T)[:, None] + torch.arange(B)[None, :] * corpus.stream_len  # [T, B], time-major
        self.cursor = 0

    def next(self):
        """(inputs [T, B], targets [T*B], wrapped: the streams started afresh and the state must be zeroed)."""
        wrapped = self.cursor + self.T + 1 > self.len
        if wrapped:
            self.cursor = 0
        p = self.pos + self.cursor
        self.cursor += self.T
        return self.ids[p], self.ids[p + 1].reshape(-1), wrapped


def heldout_loss(model, valid, T, batch):
    """loom_app_heldout_nll: the mean -ln p per character over B streams of the held-out text, state carried."""
    import torch
    pairs = len(valid) - 1
    B = batch if batch <= pairs // T else max(pairs // T, 1)
    n = pairs // B
    base = torch.arange(B)[None, :] * n
    total, state = 0.0, None
    with torch.no_grad():
        for c in range(0, n, T):
            w = min(T, n - c)
            p = base + c + torch.arange(w)[:, None]
            logits, state = model(valid[p], state)
            total += torch.nn.functional.cross_entropy(logits, valid[p + 1].reshape(-1)).item() * w * B
    return total / (B * n)


# ---------------------------------------------------------------- the PyTorch twin

class Twin:
    """The torch model, optimizer and data position of a char_lm run, from its step-0 checkpoint."""

    def __init__(self, init, a):
        import h5py
        import torch
        from char_lm_torch import load_checkpoint
        self.model, vocab, cfg = load_checkpoint(init)
        with h5py.File(init, "r") as f:
            kind = f["optimizer/kind"][()].decode()
            lr, _mom, _nest, b1, b2, eps, _alpha, wd = (float(x) for x in f["optimizer/hyper"][()])
            sched = f["train/schedule"][()].decode()
        if kind not in ("adam", "adamw") or sched != "constant":
            sys.exit(f"{init}: optimizer {kind}, schedule {sched}: the twin does adam or adamw at a constant rate")
        self.params = list(self.model.parameters())
        opt = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
        self.opt = opt(self.params, lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
        self.T, self.B, self.clip = cfg["seq"], cfg["batch"], a.clip
        self.corpus = Corpus(read_text(a.data), vocab, self.B)
        self.streams = Streams(self.corpus, self.T, self.B)
        self.state, self.norm = None, float("nan")

    def step(self):
        """One training step; returns its loss."""
        import torch
        idx, tgt, wrapped = self.streams.next()
        if wrapped:
            self.state = None  # char_lm zeroes its carried state
        self.opt.zero_grad()
        logits, state = self.model(idx, self.state)
        loss = torch.nn.functional.cross_entropy(logits, tgt)
        loss.backward()
        if self.clip > 0:
            self.norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.clip))  # the norm before clipping
        self.opt.step()
        self.state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        return loss.item()

    def heldout(self):
        return heldout_loss(self.model, self.corpus.valid, self.T, self.B)


def torch_child(a):
    """A timed torch run in the set-up the parent chose; one line per evaluation on stdout."""
    import torch
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    twin = Twin(a.init, a)
    print("info " + json.dumps({"threads": torch.get_num_threads(), "blas": loaded_blas(), "malloc": loaded_malloc(), "torch": torch.__version__}),
          flush=True)
    train_s = eval_s = 0.0
    for k in range(1, a.steps + 1):
        t0 = time.perf_counter()
        twin.step()
        train_s += time.perf_counter() - t0
        if k % a.eval_every == 0 or k == a.steps:
            t0 = time.perf_counter()
            h = twin.heldout()
            eval_s += time.perf_counter() - t0
            print("eval " + json.dumps({"step": k, "heldout": h, "train_s": train_s, "eval_s": eval_s}), flush=True)
            if h <= a.target and not a.full:
                break


# ---------------------------------------------------------------- running and timing

def timed_lines(cmd, env=None):
    """Runs cmd; yields (seconds since launch, 'out' or 'err', line, process) as lines arrive, then
    (None, None, exit code, process)."""
    q = queue.Queue()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    def pump(stream, name):
        for line in stream:
            q.put((time.perf_counter() - t0, name, line.rstrip("\n")))
        q.put((None, name, None))

    threads = [threading.Thread(target=pump, args=(s, n), daemon=True) for s, n in ((p.stdout, "out"), (p.stderr, "err"))]
    for t in threads:
        t.start()
    open_streams = 2
    while open_streams:
        item = q.get()
        if item[0] is None:
            open_streams -= 1
            continue
        yield item + (p,)
    yield None, None, p.wait(), p


def char_lm_args(a):
    return [a.char_lm, "--data", a.data, "--cell", a.cell, "--hidden", str(a.hidden), "--layers", str(a.layers),
            "--embed", str(a.embed), "--batch", str(a.batch), "--seq", str(a.seq), "--optim", a.optim, "--lr", str(a.lr),
            "--clip", str(a.clip), "--seed", str(a.seed), "--threads", str(a.threads), "--sample", "0"]


def run_checked(cmd, what):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{what} failed (exit {out.returncode}): {' '.join(cmd)}\n{out.stdout}{out.stderr}")
    return out.stdout


def write_init(a, work):
    """char_lm's initial weights (step 0) as a checkpoint, and its held-out loss at step 0."""
    init = os.path.join(work, "init.h5")
    out = run_checked(char_lm_args(a) + ["--steps", "0", "--checkpoint", init], "char_lm --steps 0")
    m = [HELDOUT.match(line) for line in out.splitlines()]
    return init, float(next(x for x in m if x).group(2))


def run_loom(a, work, steps, eval_every, log_every, stop_at_target, show=False):
    """The timed char_lm run: {step: (held-out, training s, evaluation s so far, s from launch)}, per-step losses."""
    log = os.path.join(work, "loom.csv")
    cmd = char_lm_args(a) + ["--steps", str(steps), "--eval-every", str(eval_every), "--log-every", str(log_every),
                             "--log", log]
    progress, evals, err, header, stopped = {}, {}, [], "", False
    for t, name, line, proc in timed_lines(cmd):
        if t is None:
            rc = line
            break
        if name == "err":
            err.append(line)
            m = PROGRESS.match(line)
            if m:
                progress[int(m.group(1))] = t
            continue
        m = HELDOUT.match(line)
        if line.startswith("char_lm:"):
            header = line
        elif m:
            k, h = int(m.group(1)), float(m.group(2))
            evals[k] = (h, t)
            if show:
                print(f"  loom: step {k}: held-out {h:.4f}, {t:.1f} s from launch", flush=True)
            if stop_at_target and h <= a.target and k < steps and not stopped:
                proc.send_signal(signal.SIGTERM)  # it stops after the step under way, exit 75
                stopped = True
    if rc != 0 and not (stopped and rc in (75, -signal.SIGTERM)):
        sys.exit(f"char_lm failed (exit {rc}): {' '.join(cmd)}\n" + "\n".join(err[-20:]))
    # training time: each --log row covers the steps since the last row, timed by loom without evaluations
    rows = [line.split(",") for line in open(log).read().split()[1:]]
    train, losses, last, total = {}, {}, 0, 0.0
    for r in rows:
        k, loss, tps = int(r[0]), float(r[1]), float(r[3])
        total += (k - last) * a.batch * a.seq / tps
        train[k], losses[k], last = total, loss, k
    curve, eval_total = {}, 0.0
    for k in sorted(evals):
        h, t = evals[k]
        eval_total += t - progress.get(k, t)  # from the progress line before the evaluation to its result
        curve[k] = (h, train.get(k, float("nan")), eval_total, t)
    threads = re.search(r"(\d+) threads", header)
    return curve, losses, int(threads.group(1)) if threads else a.threads


def run_torch(a, init, setup):
    """A timed torch run in a child process with set-up `setup` (a key of torch_ref.SETUPS)."""
    env, threads = setup_env(setup, a.threads)
    cmd = [sys.executable, __file__, "--child", "--init", init, "--threads", str(threads), "--data", a.data,
           "--clip", str(a.clip), "--steps", str(a.steps), "--eval-every", str(a.eval_every), "--target", str(a.target)]
    cmd += ["--full"] if a.full else []
    curve, info, err = {}, {}, []
    for t, name, line, _ in timed_lines(cmd, env):
        if t is None:
            if line != 0:
                sys.exit(f"torch ({setup}) failed (exit {line}):\n" + "\n".join(err[-20:]))
            break
        if name == "err":
            err.append(line)
            continue
        kind, _, body = line.partition(" ")
        if kind == "info":
            info = json.loads(body)
        elif kind == "eval":
            e = json.loads(body)
            curve[e["step"]] = (e["heldout"], e["train_s"], e["eval_s"], t)
            print(f"  torch {setup}: step {e['step']}: held-out {e['heldout']:.4f}, {e['train_s']:.1f} s training",
                  flush=True)
    return curve, info


def threads_name(n):
    return f"{n} thread{'' if n == 1 else 's'}"


def reached(curve, target):
    """The first evaluation at or below target: (step, held-out, training s, evaluation s, s from launch), or None."""
    for k in sorted(curve):
        if curve[k][0] <= target:
            return (k,) + curve[k]
    return None


# ---------------------------------------------------------------- the two modes

def check(a, work):
    """The twin is a twin: equal held-out loss at step 0, equal training and held-out losses over a few steps."""
    import torch
    torch.set_num_threads(1)
    init, loom_h0 = write_init(a, work)
    twin = Twin(init, a)
    torch_h0 = twin.heldout()
    curve, loom_losses, _ = run_loom(a, work, a.steps, 1, 1, False)
    rows, failures = [], 0

    def compare(what, loom_v, torch_v, tol, relative, note=""):
        nonlocal failures
        diff = abs(loom_v - torch_v) / (abs(loom_v) if relative else 1.0)
        ok = diff <= tol
        failures += not ok
        rows.append(f"{what:<28} loom {loom_v:10.6f}  torch {torch_v:10.6f}  {'relative' if relative else 'absolute'} "
                    f"difference {diff:.1e} (limit {tol:.1e}) {'ok' if ok else 'MISMATCH'}{note}")

    # char_lm prints held-out losses to 4 decimals: at step 0 the limit 1e-4 covers its rounding (5e-5)
    compare("held-out loss, step 0", loom_h0, torch_h0, 1e-4, False)
    for k in range(1, a.steps + 1):
        loss = twin.step()
        # step 1's loss is computed with the initial weights (before any update): the same limit
        note = f"  (gradient norm {twin.norm:.3f}{', clipped' if twin.norm > a.clip else ''})" if a.clip > 0 else ""
        compare(f"training loss, step {k}", loom_losses[k], loss, 1e-4 if k == 1 else a.tol, k != 1, note)
        compare(f"held-out loss, after step {k}", curve[k][0], twin.heldout(), max(a.tol, 1e-4 / curve[k][0]), True)
    print(f"twin check: {a.cell} x{a.layers} hidden {a.hidden}, embed {a.embed}, batch {a.batch} x seq {a.seq}, "
          f"{a.steps} steps on {a.data} ({twin.corpus.ntrain} training characters, stream length "
          f"{twin.corpus.stream_len}, so the streams wrap after {(twin.corpus.stream_len - 1) // a.seq} windows)")
    print("\n".join(rows))
    print("twin check: " + ("ok" if not failures else f"{failures} MISMATCH(ES)"))
    return 1 if failures else 0


def measure(a, work):
    print(f"time to quality: {a.cell} x{a.layers} hidden {a.hidden}, embed {a.embed}, batch {a.batch} x seq {a.seq}, "
          f"{a.optim} lr {a.lr}, clip {a.clip}, seed {a.seed}, on {a.data}; target held-out loss {a.target} nats/char, "
          f"evaluation every {a.eval_every} steps, at most {a.steps} steps", flush=True)
    init, loom_h0 = write_init(a, work)
    twin = Twin(init, a)
    torch_h0 = twin.heldout()
    print(f"step 0 (the same initial weights): held-out loss loom {loom_h0:.4f}, torch {torch_h0:.6f}", flush=True)
    if abs(loom_h0 - torch_h0) > 1e-4:
        sys.exit("the twin's held-out loss at step 0 differs from char_lm's by more than 1e-4: not a twin; "
                 "run --check")
    print("loom: training...", flush=True)
    loom, _, loom_threads = run_loom(a, work, a.steps, a.eval_every, a.eval_every, not a.full, show=True)
    sides = {f"loom, {threads_name(loom_threads)}": loom}
    setups = list(SETUPS) if a.torch_setup == "all" else [a.torch_setup]
    for s in setups:
        print(f"torch, {s}: training...", flush=True)
        curve, info = run_torch(a, init, s)
        sides[f"torch, {s}, {threads_name(info.get('threads'))}"] = curve
        print(f"  torch {s}: {info.get('threads')} intra-op threads, BLAS: {info.get('blas')}, malloc: {info.get('malloc')}", flush=True)

    names = list(sides)
    print("\nheld-out loss (nats/char) | training s (evaluations excluded) at each evaluation:")
    print(f"{'step':>6}  " + "  ".join(f"{n:>34}" for n in names))
    for k in sorted(set().union(*sides.values())):
        cells = [f"{sides[n][k][0]:.4f} | {sides[n][k][1]:8.1f} s" if k in sides[n] else "-" for n in names]
        print(f"{k:>6}  " + "  ".join(f"{c:>34}" for c in cells))
    print(f"\nto held-out loss <= {a.target} nats/char:")
    got = {}
    for n in names:
        r = reached(sides[n], a.target)
        if r is None:
            best = min(v[0] for v in sides[n].values()) if sides[n] else float("nan")
            print(f"  {n}: not reached in {max(sides[n], default=0)} steps (best {best:.4f})")
            continue
        k, h, train_s, eval_s, wall = r
        got[n] = train_s
        print(f"  {n}: step {k} (held-out {h:.4f}), {train_s:.1f} s training, {k * a.batch * a.seq / train_s:,.0f} "
              f"tokens/s; evaluations {eval_s:.1f} s more, {wall:.1f} s from launch")
    torch_times = sorted((v, n) for n, v in got.items() if n.startswith("torch"))
    if torch_times and names[0] in got:
        print(f"  torch's best ({torch_times[0][1]}) / loom: {torch_times[0][0] / got[names[0]]:.2f}x the training time")
    if a.json:
        json.dump({"args": vars(a), "heldout_step0": {"loom": loom_h0, "torch": torch_h0},
                   "curves": {n: {str(k): dict(zip(("heldout", "train_s", "eval_s", "wall_s"), v)) for k, v in c.items()}
                              for n, c in sides.items()}}, open(a.json, "w"), indent=1)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--char-lm", default=os.path.join(ROOT, "build/release/examples/char_lm"), help="the char_lm binary")
    ap.add_argument("--data", default="/usr/share/games/fortunes", help="text file or directory (char_lm's default)")
    ap.add_argument("--target", type=float, default=2.1, help="held-out loss to reach, nats/char")
    ap.add_argument("--steps", type=int, help="at most this many steps (default 1500; --check: the steps compared, 5)")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--cell", default="lstm", choices=["lstm", "gru", "rnn"])
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--embed", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--optim", default="adam", choices=["adam", "adamw"])
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--clip", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0,
                    help="loom's --threads and torch's threads (0: loom's default, and each torch set-up's own)")
    ap.add_argument("--torch-setup", default="all", choices=["all", *SETUPS])
    ap.add_argument("--full", action="store_true", help="run all --steps, not only until the target")
    ap.add_argument("--work", help="folder for the checkpoint and log (default: a temporary one)")
    ap.add_argument("--json", help="also write the curves to this file")
    ap.add_argument("--check", action="store_true", help="only verify that the twin matches char_lm (a small model)")
    ap.add_argument("--tol", type=float, default=1e-5,
                    help="--check: the relative limit on the losses after step 1 (held-out: at least 1e-4 absolute, "
                         "as char_lm prints 4 decimals)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--init", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return torch_child(a)
    if a.steps is None:
        a.steps = 5 if a.check else 1500
    if a.check and a.threads == 0:
        a.threads = 1
    try:
        import h5py  # noqa: F401
        import torch  # noqa: F401
    except ImportError as e:
        print(f"time_to_quality: skipped: {sys.executable} cannot import torch and h5py ({e})")
        return 77 if a.check else 1
    if not os.access(a.char_lm, os.X_OK):
        sys.exit(f"no char_lm at {a.char_lm}: build it (bash scripts/run.sh) or pass --char-lm PATH")
    if a.work:
        os.makedirs(a.work, exist_ok=True)
        return check(a, a.work) if a.check else measure(a, a.work)
    with tempfile.TemporaryDirectory(prefix="ttq") as work:
        return check(a, work) if a.check else measure(a, work)


if __name__ == "__main__":
    sys.exit(main())
