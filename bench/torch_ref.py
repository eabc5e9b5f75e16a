#!/usr/bin/python3
"""PyTorch reference for bench/bench.c: the same configurations, model and
update (forward + backward + Adam), timed the same way (median of N steps
after one warm-up). By default PyTorch runs in its best set-ups on Debian, and
the best of them counts: the pthread OpenBLAS (Debian's default) at torch's
default threads and the OpenMP OpenBLAS at 2 threads, each with glibc's malloc
and with tcmalloc (Debian's libtcmalloc-minimal4, preloaded, as PyTorch's CPU
tuning guide advises: glibc maps and unmaps every tensor over 32 MiB, and the
page faults cost M a third of its step). Each run reports the BLAS and the
allocator it actually loaded (from /proc/self/maps). --blas and --malloc pick
one of each."""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

LIBDIR = "/usr/lib/x86_64-linux-gnu"
BLAS = {  # name: (library directory first on the search path, threads; 0: torch's default)
    "pthread": (f"{LIBDIR}/openblas-pthread", 0),
    "openmp": (f"{LIBDIR}/openblas-openmp", 2),
}
MALLOCS = {"glibc": None, "tcmalloc": f"{LIBDIR}/libtcmalloc_minimal.so.4"}  # name: library to preload
# Set-up name: (BLAS, malloc); glibc's is the plain BLAS name.
SETUPS = {(b if m == "glibc" else f"{b}+{m}"): (b, m) for m in MALLOCS for b in BLAS}


def setup_env(name, threads=0):
    """The environment and thread count (0: torch's default) of set-up `name`, for a child process."""
    blas, malloc = SETUPS[name]
    libdir, own = BLAS[blas]
    threads = threads or own
    env = dict(os.environ, LD_LIBRARY_PATH=libdir + ":" + os.environ.get("LD_LIBRARY_PATH", ""))
    env.pop("LD_PRELOAD", None)
    if MALLOCS[malloc]:
        if not os.path.exists(MALLOCS[malloc]):
            sys.exit(f"torch_ref: set-up {name} needs {MALLOCS[malloc]} (apt-get install libtcmalloc-minimal4, "
                     "or bash scripts/deps.sh test); --malloc glibc leaves it out")
        env["LD_PRELOAD"] = MALLOCS[malloc]
    if threads:
        env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = str(threads)
    return env, threads


def loaded_malloc():
    """The allocator this process runs: a preloaded one if mapped, else glibc's."""
    with open("/proc/self/maps") as f:
        maps = f.read()
    return next((m for m in MALLOCS if MALLOCS[m] and os.path.basename(MALLOCS[m]).split(".")[0] in maps), "glibc")

CONFIGS = {  # name: (input, hidden, batch, steps, layers, vocab, embed)
    "S": (123, 320, 64, 100, 1, 0, 0),
    "M": (512, 512, 64, 100, 1, 0, 0),
    "L": (1024, 1024, 64, 25, 1, 0, 0),
    "C": (64, 512, 50, 50, 2, 65, 64),
}


def step_flops(i, h, b, t, layers, vocab):
    """The products the model needs, as bench.c counts them (but its embedding fold): per layer
    the projections, the two weight gradients, the state's gradient past the first step and
    the input's gradient where the input takes one; the head's three."""
    g, tok, f = 2.0 * 4 * h, b * t, 0.0
    for l in range(layers):
        dx = 1 if l or vocab else 0
        f += g * h * (3 * tok - b) + g * (h if l else i) * (2 + dx) * tok
    if vocab:
        f += 3 * 2.0 * h * vocab * tok
    return f


def loaded_blas():
    """The BLAS libraries mapped into this process."""
    libs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            path = line.split()[-1]
            if "blas" in os.path.basename(path):
                libs.add(os.path.realpath(path))
    return ", ".join(sorted(libs)) or "none found"


def blas_core():
    """The kernel set the loaded OpenBLAS runs (OPENBLAS_CORETYPE pins it), as bench prints it."""
    import ctypes
    for path in loaded_blas().split(", "):
        if "openblas" in path:
            lib = ctypes.CDLL(path)  # already mapped: the same library, not a second copy
            lib.openblas_get_corename.restype = ctypes.c_char_p
            return lib.openblas_get_corename().decode()
    return "unknown"


def peak_rss_mib():
    """This process's peak resident set so far (Linux: KiB), as bench.c's RSS column."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run(name, steps):
    import torch
    i, h, b, t, layers, vocab, embed = CONFIGS[name]
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(i, h, num_layers=layers)
    mods = [lstm]
    if vocab:
        emb, head = torch.nn.Embedding(vocab, embed), torch.nn.Linear(h, vocab)
        mods += [emb, head]
        idx = torch.randint(0, vocab, (t, b))
        tgt = torch.randint(0, vocab, (t * b,))
    else:
        x = torch.rand(t, b, i) * 2 - 1
        zero = torch.zeros(t, b, h)
    params = [p for m in mods for p in m.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    state = None
    times = []
    for s in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        if state is not None:  # truncated BPTT: carry the state, detached
            state = tuple(v.detach() for v in state)
        if vocab:
            y, state = lstm(emb(idx), state)
            loss = torch.nn.functional.cross_entropy(head(y.reshape(t * b, h)), tgt)
        else:
            y, state = lstm(x, state)
            loss = torch.nn.functional.mse_loss(y, zero)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    med = statistics.median(times[1:])
    print(f"{name:<6} {i:6d} {h:6d} {b:4d} {t:4d} {med * 1e3:8.1f} {t * b / med:10.0f} "
          f"{step_flops(i, h, b, t, layers, vocab) / med * 1e-9:8.1f} {peak_rss_mib():8.0f}", flush=True)


def child(a):
    import torch
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, BLAS: {loaded_blas()} ({blas_core()} kernels), "
          f"malloc: {loaded_malloc()}, "
          f"median of {a.steps} steps (after 1 warm-up); peak RSS after the import {peak_rss_mib():.0f} MiB "
          f"(RSS: the process's peak so far, so run one --config to read a model's alone)")
    print(f"{'config':<6} {'I':>6} {'H':>6} {'B':>4} {'T':>4} {'ms/step':>8} {'tokens/s':>10} {'GFLOP/s':>8} {'RSS MiB':>8}")
    for name in CONFIGS if a.config == "all" else [a.config]:
        run(name, a.steps)


def setup_run(name, a):
    """Runs this script as a child in set-up `name`; returns {config: (tokens/s, GFLOP/s)}."""
    env, threads = setup_env(name, a.threads)
    cmd = [sys.executable, __file__, "--child", "--config", a.config, "--steps", str(a.steps), "--threads", str(threads)]
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    blas, malloc = SETUPS[name]
    head = next((line for line in out.splitlines() if line.startswith("# torch")), "")
    if BLAS[blas][0] not in head or f"malloc: {malloc}," not in head:  # a library path that did not take
        sys.exit(f"torch_ref: set-up {name} did not load {blas} OpenBLAS with {malloc}: {head}")
    print(f"== {name}: {blas} OpenBLAS ({BLAS[blas][0]}), threads {threads or 'torch default'}, malloc {malloc}")
    print(out, end="", flush=True)
    rows = {}
    for line in out.splitlines():
        f = line.split()
        if f and f[0] in CONFIGS:
            rows[f[0]] = (float(f[6]), float(f[7]))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="all", choices=["all", *CONFIGS])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: the set-up's own)")
    ap.add_argument("--blas", default="both", choices=["both", *BLAS])
    ap.add_argument("--malloc", default="both", choices=["both", *MALLOCS])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a)
    names = [n for n, (b, m) in SETUPS.items() if a.blas in ("both", b) and a.malloc in ("both", m)]
    results = {n: setup_run(n, a) for n in names}
    print("== best of the set-ups")
    print(f"{'config':<6} {'tokens/s':>10} {'GFLOP/s':>8}  set-up")
    for c in CONFIGS if a.config == "all" else [a.config]:
        got = [(results[n][c], n) for n in names if c in results[n]]
        if got:
            (tok, gf), n = max(got)
            print(f"{c:<6} {tok:10.0f} {gf:8.1f}  {n}")


if __name__ == "__main__":
    main()
