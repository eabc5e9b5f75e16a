#!/usr/bin/python3
"""Fuzzes the example programs with damaged checkpoints and odd input files.

Every case either runs cleanly (exit 0) or ends with exit 1 or 2 and a one-line
message on stderr, starting with the program's name, that names the bad file (and,
for a checkpoint, the dataset or attribute, unless the file as a whole is
unreadable). Anything else is a failure: a signal or an exit code other than
0, 1, 2 (a crash), an AddressSanitizer, LeakSanitizer or UBSan report, a run
that outlives --timeout (a hang), or a non-zero exit without such a message
(an unclear error).

The inputs are real: the examples first write checkpoints (char_lm, adding_problem,
timeseries) and a text and a CSV file. Each case then mutates one of them:
  checkpoints: random byte flips, truncations, and HDF5-aware edits with h5py
    (a dataset's shape, dtype or attributes changed, a dataset or group deleted,
    renamed, swapped with another or replaced by a group or a link, NaN/Inf and
    huge values written, strings where numbers belong, empty datasets), and the
    example resumes from it (--resume, a few steps, --eval or --sample);
  char_lm's --data / --eval text: UTF-16/32 with a BOM, Latin-1, invalid UTF-8, NUL
    bytes, binary files, an empty file, one character, one line of 1-10 MB,
    directories;
  timeseries' --data CSV: very long lines, empty and missing columns, NaN, Inf and
    1e400, CRLF, a header only, quoted fields, thousands of columns.

Each case draws from its own generator, seeded by (--seed, case number), so a case
is reproduced alone with --only N. A failing case is recorded in WORK/results/
case-N/ (the input that failed, cmd.sh to rerun it, stderr, what was mutated) and
listed in WORK/results/failures.txt; the exit status is then 1.

Usage: fuzz.py --bin-dir DIR --work DIR --cases N --seed S [--jobs J] [--timeout 30]
"""
import argparse
import concurrent.futures
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback

import h5py
import numpy as np

PROGS = ("char_lm", "adding_problem", "timeseries")
SANITIZER = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|LeakSanitizer|runtime error:|"
                       r"ERROR: UndefinedBehaviorSanitizer|SUMMARY: (Address|Undefined|Leak)")
# With the checkpoint named, a message must also name what in it is wrong: a dataset or
# group path, a root attribute, a /config key in conflict, or say the file as a whole
# cannot be read.
CKPT_WHAT = re.compile(r"(?<![\w.])/[A-Za-z_][\w.]*|format_version|format version|world_size|threads|"
                       r"not an HDF5 file|HDF5 cannot open it|which has [a-z_]+|not a loom checkpoint")

# The trainer's stop on a non-finite or exploding loss: the clear outcome for a checkpoint
# whose values are finite but absurd (weights of 1e30, a learning rate of 1e17), which no
# reader can tell from a real one.
DIVERGED = re.compile(r"step \d+: the loss (is \S+ and the gradient norm \S+|\S+ is over \d+ times the first "
                      r"step's .*training diverged)[:;] stopped before the update")

# ---------------------------------------------------------------- the base inputs

WORDS = ("the quick brown fox jumps over the lazy dog a stitch in time saves nine "
         "all that glitters is not gold").split()

# The base runs; the checkpoint each leaves is what the checkpoint cases mutate. char_lm's
# text is short, so its streams wrap around (a new epoch) within a few resumed steps.
BASE_RUNS = {
    "char_lm": ["--data", "{base}/text.txt", "--hidden", "16", "--batch", "2", "--seq", "8", "--layers", "2",
                "--dropout", "0.1", "--steps", "2", "--sample", "0", "--optim", "adam"],
    "adding_problem": ["--cell", "gru", "--hidden", "8", "--batch", "4", "--seq", "10", "--steps", "2",
                       "--optim", "rmsprop", "--momentum", "0.9"],
    "timeseries": ["--data", "{base}/series.csv", "--column", "value", "--cell", "rnn", "--hidden", "8",
                   "--batch", "4", "--seq", "12", "--steps", "2", "--optim", "sgd", "--momentum", "0.9",
                   "--sched", "cosine", "--warmup", "1"],
}
# What a resumed run keeps of the base flags (the optimizer must match the checkpoint's),
# and the architecture flags a case may repeat (then a changed /config is a conflict).
RESUME_KEEP = {
    "char_lm": ["--data", "{base}/text.txt", "--optim", "adam", "--sample", "0"],
    "adding_problem": ["--optim", "rmsprop", "--momentum", "0.9", "--batch", "4", "--seq", "10"],
    "timeseries": ["--data", "{base}/series.csv", "--column", "value", "--optim", "sgd", "--momentum", "0.9",
                   "--sched", "cosine", "--warmup", "1"],
}
ARCH = {
    "char_lm": ["--hidden", "16", "--layers", "2", "--cell", "lstm", "--embed", "64", "--batch", "2", "--seq", "8"],
    "adding_problem": ["--hidden", "8", "--layers", "1", "--cell", "gru"],
    "timeseries": ["--hidden", "8", "--layers", "1", "--cell", "rnn", "--batch", "4", "--seq", "12"],
}


def base_text(n_words=24, seed=11):
    r = random.Random(seed)
    return " ".join(r.choice(WORDS) for _ in range(n_words)) + "\n"


def base_csv(rows=300, seed=12):
    r = random.Random(seed)
    lines = ["t,value,other"]
    for i in range(rows):
        lines.append("%d,%.4f,%d" % (i, np.sin(i / 7.0) + 0.1 * r.random(), r.randrange(100)))
    return "\n".join(lines) + "\n"


# libhdf5 1.10 leaks small blocks on its own error paths when a file is corrupt (the stack
# ends in H5Aexists, H5Dopen2, H5Fopen... with loom's call closed correctly): not loom's.
# Every handle loom leaves open is freed by HDF5 at exit, so this hides no leak of loom's
# own; a leak allocated by loom's code (or a program's) is still reported.
LSAN_SUPPRESSIONS = "leak:libhdf5_serial.so\nleak:libhdf5.so\n"


def child_env(work):
    supp = os.path.join(work, "lsan.supp")
    with open(supp, "w") as f:
        f.write(LSAN_SUPPRESSIONS)
    env = dict(os.environ)
    lsan = env.get("LSAN_OPTIONS", "")
    env["LSAN_OPTIONS"] = ":".join(x for x in (lsan, "suppressions=" + supp, "print_suppressions=0") if x)
    env["OMP_NUM_THREADS"] = "1"  # each case one core; --jobs runs several side by side
    # Sanitizer builds: leaks count as failures; a failed huge malloc returns NULL as it would
    # without ASan (the programs must then say "cannot allocate"), rather than aborting.
    asan = env.get("ASAN_OPTIONS", "")
    env["ASAN_OPTIONS"] = ":".join(x for x in (asan, "detect_leaks=1:allocator_may_return_null=1") if x)
    ubsan = env.get("UBSAN_OPTIONS", "")
    env["UBSAN_OPTIONS"] = ":".join(x for x in (ubsan, "print_stacktrace=1") if x)
    return env


def make_bases(bin_dir, base, env):
    """Writes the base text and CSV and runs each example once for its checkpoint."""
    shutil.rmtree(base, ignore_errors=True)
    os.makedirs(base)
    with open(os.path.join(base, "text.txt"), "w") as f:
        f.write(base_text())
    with open(os.path.join(base, "series.csv"), "w") as f:
        f.write(base_csv())
    for prog, args in BASE_RUNS.items():
        ck = os.path.join(base, prog + ".h5")
        argv = [os.path.join(bin_dir, prog)] + [a.format(base=base) for a in args] + ["--checkpoint", ck]
        p = subprocess.run(argv, cwd=base, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)
        if p.returncode != 0 or not os.path.exists(ck):
            sys.exit("fuzz: the base run failed (%d): %s\n%s" % (p.returncode, " ".join(argv),
                                                                   p.stderr.decode(errors="replace")))


# ---------------------------------------------------------------- checkpoint mutations

def byte_flips(path, r):
    data = bytearray(open(path, "rb").read())
    n = min(len(data), int(2 ** r.uniform(0, 6)))  # 1 to 64 bytes, most often few
    where = sorted(r.randrange(len(data)) for _ in range(n))
    for i in where:
        data[i] ^= r.randrange(1, 256)
    open(path, "wb").write(data)
    return "flip %d byte(s) at %s" % (n, ",".join(map(str, where[:8])) + ("..." if n > 8 else ""))


def truncate(path, r):
    size = os.path.getsize(path)
    keep = r.choice([r.randrange(size), size - r.randrange(1, 64), r.randrange(min(size, 4096))])
    keep = max(0, min(size - 1, keep))
    with open(path, "r+b") as f:
        f.truncate(keep)
    return "truncate to %d of %d bytes" % (keep, size)


def overwrite_run(path, r):
    data = bytearray(open(path, "rb").read())
    at, n = r.randrange(len(data)), r.choice([4, 16, 64, 512])
    fill = r.choice([0x00, 0xFF])
    data[at:at + n] = bytes([fill]) * len(data[at:at + n])
    open(path, "wb").write(data)
    return "overwrite %d bytes at %d with 0x%02x" % (n, at, fill)


def h5_objects(f):
    dsets, groups = [], []

    def visit(name, obj):
        (dsets if isinstance(obj, h5py.Dataset) else groups).append("/" + name)
    f.visititems(visit)
    return sorted(dsets), sorted(groups)


def recreate(f, name, data, dtype=None, **kw):
    """Replaces dataset `name` with new data (a numpy array, h5py.Empty, or a str)."""
    del f[name]
    if isinstance(data, h5py.Empty):
        f.create_dataset(name, data=data)
    elif dtype is not None:
        f.create_dataset(name, data=data, dtype=dtype, **kw)
    else:
        f.create_dataset(name, data=data, **kw)


def read_any(f, name):
    ds = f[name]
    if ds.shape is None:
        return np.zeros((0,), np.float32)
    return ds[()]


def m_shape(f, r, nr, dsets, groups):
    name = r.choice(dsets)
    old = read_any(f, name)
    old = np.asarray(old)
    shp = old.shape
    options = [(), (0,), (1,), (3, 2, 2), tuple(r.randrange(0, 6) for _ in range(r.randrange(1, 5)))]
    if len(shp) >= 1:
        options += [shp[:-1] + (shp[-1] + 1,), shp[:-1] + (max(0, shp[-1] - 1),), (1,) + shp, (int(np.prod(shp)),)]
    if len(shp) == 2:
        options += [(shp[1], shp[0]), (shp[0] * shp[1], 1)]
    new = r.choice(options)
    if new == shp:
        new = shp + (1,)
    flat = old.reshape(-1)
    n = int(np.prod(new)) if new else 1
    data = np.resize(flat, n) if flat.size else np.zeros(n, old.dtype)
    recreate(f, name, data.reshape(new), dtype=old.dtype)
    return "shape of %s %s -> %s" % (name, shp, new)


DTYPES = ["float64", "float16", "float32", "int8", "uint8", "int32", "int64", "uint64", "bool", "fixed string",
          "vlen string", "compound", "array", "opaque", "enum", "complex"]


def m_dtype(f, r, nr, dsets, groups):
    name = r.choice(dsets)
    old = np.asarray(read_any(f, name))
    kind = r.choice(DTYPES)
    num = old if old.dtype.kind in "fiub" else np.resize(np.array([3], np.int64), old.shape)
    num = np.nan_to_num(num.astype(np.float64)) if num.dtype.kind == "f" else num
    if kind in ("float64", "float16", "float32", "int8", "uint8", "int32", "int64", "uint64", "bool"):
        with np.errstate(all="ignore"):
            data = num.astype(kind)
        recreate(f, name, data)
    elif kind == "fixed string":
        data = np.asarray(num.astype(str)).astype("S") if num.size else np.zeros(num.shape, "S4")
        recreate(f, name, data)
    elif kind == "vlen string":
        data = np.array(num.astype(str).tolist(), dtype=object) if num.shape else str(num)
        recreate(f, name, data, dtype=h5py.string_dtype())
    elif kind == "compound":
        dt = np.dtype([("a", "f4"), ("b", "i4")])
        data = np.zeros(num.shape, dt)
        recreate(f, name, data)
    elif kind == "array":
        dt = np.dtype(("f4", (2,)))
        recreate(f, name, np.zeros(num.shape, dt))
    elif kind == "opaque":
        recreate(f, name, np.zeros(num.shape, "V4"))
    elif kind == "enum":
        dt = h5py.enum_dtype({"A": 0, "B": 1}, basetype="i1")
        recreate(f, name, np.zeros(num.shape, "i1"), dtype=dt)
    else:
        recreate(f, name, num.astype(np.complex64))
    return "dtype of %s %s -> %s" % (name, old.dtype, kind)


ATTR_VALUES = [0, -1, 1, 2, 99, 2 ** 31 - 1, -2 ** 31, 2 ** 40, 2 ** 63 - 1]


def m_attr(f, r, nr, dsets, groups):
    what = r.choice(["set", "set", "type", "delete", "add"])
    key = r.choice(["format_version", "world_size", "threads"])
    if what == "set":
        v = r.choice(ATTR_VALUES)
        dt = r.choice(["int32", "int64", "uint64", "float64", "int8"])
        with np.errstate(all="ignore"):
            arr = np.array(v).astype(dt) if not (dt.startswith("u") and v < 0) else np.array(2 ** 64 - 1, "uint64")
        f.attrs.create(key, arr)
        return "root attribute %s = %s (%s)" % (key, arr, dt)
    if what == "type":
        v = r.choice([b"1", "1", np.array([1, 1, 1, 1], "int32"), np.zeros((0,), "int32"), h5py.Empty("i4"),
                      np.array([[1, 2], [3, 4]], "int64"), np.zeros((64,), "int64"), 1.5, np.float32("nan"),
                      np.zeros((), [("a", "i4"), ("b", "i4")])])
        f.attrs.create(key, v) if not isinstance(v, h5py.Empty) else f.attrs.create(key, v, dtype="i4")
        return "root attribute %s replaced by %r" % (key, v)
    if what == "delete":
        if key in f.attrs:
            del f.attrs[key]
        return "root attribute %s deleted" % key
    target = r.choice(dsets + groups + ["/"])
    f[target].attrs.create(r.choice(["junk", "format_version", "x" * 200]), r.choice([1, "text", np.zeros(1000)]))
    return "attribute added to %s" % target


def m_delete(f, r, nr, dsets, groups):
    name = r.choice(dsets + groups * 2)
    del f[name]
    return "delete %s" % name


def m_swap(f, r, nr, dsets, groups):
    a, b = r.sample(dsets, 2)
    da, db = f[a], f[b]
    if da.shape == db.shape and da.shape is not None and r.random() < 0.5:
        va, vb = da[()], db[()]
        try:
            with np.errstate(all="ignore"):
                da[()] = vb if va.dtype == vb.dtype else np.asarray(vb).astype(va.dtype)
                db[()] = va if va.dtype == vb.dtype else np.asarray(va).astype(vb.dtype)
            return "swap contents of %s and %s" % (a, b)
        except (TypeError, ValueError, OSError):
            pass
    f.move(a, a + ".swap")
    f.move(b, a)
    f.move(a + ".swap", b)
    return "swap datasets %s and %s" % (a, b)


def m_rename(f, r, nr, dsets, groups):
    name = r.choice(dsets + groups)
    parent = name.rsplit("/", 1)[0] or "/"
    new = r.choice([name + "_old", name.upper(), (parent.rstrip("/") + "/" + "x"), "/moved" + name.replace("/", "_")])
    if new in f:
        new += "2"
    f.move(name, new)
    return "rename %s -> %s" % (name, new)


def m_nonfinite(f, r, nr, dsets, groups):
    floats = [d for d in dsets if f[d].dtype.kind == "f" and f[d].shape is not None] or dsets
    name = r.choice(floats)
    data = np.array(read_any(f, name), dtype=np.float32)
    val = r.choice([np.nan, np.inf, -np.inf, 3.4e38, -3.4e38, 1e30, 1e-45])
    if data.size == 0:
        data = np.array([val], np.float32)
    elif r.random() < 0.3:
        data[...] = val
    else:
        flat = data.reshape(-1)
        for _ in range(r.randrange(1, 4)):
            flat[r.randrange(flat.size)] = val
    recreate(f, name, data)
    return "write %s into %s" % (val, name)


INT_VALUES = [-1, 0, -2 ** 31, 2 ** 31 - 1, 2 ** 31, 2 ** 32 + 16, 2 ** 53 + 1, 2 ** 62, 2 ** 63 - 1, -2 ** 63,
              (1 << 24) + 1, 3, 1]


def m_bigint(f, r, nr, dsets, groups):
    ints = [d for d in dsets if f[d].dtype.kind in "iu" and f[d].shape is not None] or dsets
    name = r.choice(ints)
    ds = f[name]
    v = r.choice(INT_VALUES)
    shp = ds.shape or ()
    if ds.dtype.kind == "u":
        data = np.full(shp, r.choice([0, 2 ** 64 - 1, 2 ** 63, 1]), np.uint64)
    else:
        data = np.full(shp, v, np.int64)
    if ds.dtype.kind in "iu" and ds.dtype.itemsize == 1 and name.endswith("vocab"):
        data = np.array(nr.integers(0, 256, size=shp), np.uint8)  # other bytes, maybe repeated
        if r.random() < 0.5 and data.size > 1:
            data[1] = data[0]
        v = "random bytes"
    recreate(f, name, data)
    return "set %s to %s" % (name, v if ds.dtype.kind != "u" else data.reshape(-1)[:1])


STRINGS = ["", "lstm", "gru", "rnn", "rnn_relu", "peephole", "sgd", "adam", "adamw", "rmsprop", "adagrad", "constant",
           "step", "cosine", "x" * 1000, "lstm ", " lstm", "LSTM", "lstm\x01", "12", "nan", "\u00e9t\u00e9"]


def m_string(f, r, nr, dsets, groups):
    name = r.choice(dsets)
    ds = f[name]
    if ds.dtype.kind in "SOU" or h5py.check_string_dtype(ds.dtype):
        s = r.choice(STRINGS + [b"\xff\xfe", 5, 2.5, np.array([1, 2], np.int64)])
    else:
        s = r.choice(["12", "1e3", "nan", "", "lstm", "-1", "0x10", "9" * 40])
    form = r.choice(["vlen", "fixed", "bytes"])
    if isinstance(s, (int, float, np.ndarray)):
        recreate(f, name, np.asarray(s))
    elif isinstance(s, bytes) or form == "bytes":
        b = s if isinstance(s, bytes) else s.encode()
        recreate(f, name, np.array(b, dtype="S%d" % max(1, len(b))) if b else np.array(b"", "S1"))
    elif form == "vlen":
        recreate(f, name, s, dtype=h5py.string_dtype())
    else:
        b = s.encode()
        recreate(f, name, np.array(b, dtype="S%d" % max(1, len(b))))
    return "set %s to the string %r (%s)" % (name, s if not isinstance(s, str) or len(s) < 50 else s[:20] + "...",
                                             form)


def m_empty(f, r, nr, dsets, groups):
    name = r.choice(dsets)
    dt = f[name].dtype
    how = r.choice(["null", "zero", "zero2"])
    if how == "null":
        recreate(f, name, h5py.Empty(dt if dt.kind != "O" else "S1"))
    else:
        recreate(f, name, np.zeros((0,) if how == "zero" else (0, 3), dt if dt.kind != "O" else "S1"))
    return "make %s empty (%s)" % (name, how)


def m_kind(f, r, nr, dsets, groups, others=()):
    name = r.choice(dsets + groups)
    how = r.choice(["group", "dataset", "dangling soft link", "soft link", "hard link", "external link",
                    "external link to a missing file", "self link"])
    other = r.choice(dsets)
    del f[name]
    if how == "group":
        f.create_group(name)
    elif how == "dataset":
        f.create_dataset(name, data=np.zeros(3, np.float32))
    elif how == "dangling soft link":
        f[name] = h5py.SoftLink("/nowhere/at/all")
    elif how == "soft link":
        f[name] = h5py.SoftLink(other if other != name else "/")
    elif how == "hard link":
        if other in f:
            f[name] = f[other]
        else:
            f.create_group(name)
    elif how == "external link":
        f[name] = h5py.ExternalLink(r.choice(others) if others else "/etc/passwd", other)
    elif how == "external link to a missing file":
        f[name] = h5py.ExternalLink("/nonexistent/fuzz.h5", name)
    else:
        f[name] = h5py.SoftLink(name)
    return "replace %s with a %s" % (name, how)


def m_filters(f, r, nr, dsets, groups):
    name = r.choice([d for d in dsets if f[d].shape] or dsets)
    ds = f[name]
    data = read_any(f, name)
    if ds.shape:
        kw = r.choice([{"compression": "gzip"}, {"shuffle": True, "chunks": True}, {"maxshape": (None,) * len(ds.shape)},
                       {"fletcher32": True, "compression": "lzf"}, {"scaleoffset": 0} if ds.dtype.kind in "iu" else {}])
        recreate(f, name, data, **kw)
        return "rewrite %s with %s" % (name, kw)
    return "nothing (%s is scalar)" % name


def m_scale(f, r, nr, dsets, groups):
    floats = [d for d in dsets if f[d].dtype.kind == "f" and f[d].shape] or dsets
    name = r.choice(floats)
    data = np.asarray(read_any(f, name), np.float64) * r.choice([1e6, 1e20, -1e30, 0.0, 1e-30])
    recreate(f, name, np.clip(data, -3.4e38, 3.4e38).astype(np.float32))
    return "scale %s" % name


H5_MUTATIONS = [(m_shape, 10), (m_dtype, 10), (m_attr, 6), (m_delete, 8), (m_swap, 6), (m_rename, 4),
                (m_nonfinite, 8), (m_bigint, 10), (m_string, 8), (m_empty, 6), (m_kind, 5), (m_filters, 3),
                (m_scale, 3)]


def pick(r, weighted):
    total = sum(w for _, w in weighted)
    x = r.uniform(0, total)
    for item, w in weighted:
        x -= w
        if x <= 0:
            return item
    return weighted[-1][0]


def h5_mutate(path, r, nr, others):
    done = []
    for _ in range(1 if r.random() < 0.7 else r.randrange(2, 4)):
        for attempt in range(6):
            fn = pick(r, H5_MUTATIONS)
            try:
                with h5py.File(path, "r+") as f:
                    dsets, groups = h5_objects(f)
                    if not dsets:
                        return done or ["nothing left to mutate"]
                    if fn is m_kind:
                        done.append(fn(f, r, nr, dsets, groups, others))
                    else:
                        done.append(fn(f, r, nr, dsets, groups))
                break
            except Exception as e:  # a mutation h5py cannot make: try another, deterministically
                done.append("(%s failed: %s)" % (fn.__name__, str(e).splitlines()[0][:60] if str(e) else type(e).__name__))
    return done


def ckpt_case(r, nr, ctx, cdir):
    prog = pick(r, [("char_lm", 45), ("adding_problem", 27), ("timeseries", 28)])
    base = ctx["base"]
    ck = os.path.join(cdir, "ck.h5")
    shutil.copyfile(os.path.join(base, prog + ".h5"), ck)
    others = [os.path.join(base, p + ".h5") for p in PROGS]
    how = pick(r, [("flip", 18), ("truncate", 8), ("overwrite", 4), ("h5", 62), ("h5+flip", 8)])
    if how == "flip":
        desc = [byte_flips(ck, r)]
    elif how == "truncate":
        desc = [truncate(ck, r)]
    elif how == "overwrite":
        desc = [overwrite_run(ck, r)]
    else:
        desc = h5_mutate(ck, r, nr, others)
        if how == "h5+flip":
            desc.append(byte_flips(ck, r))
    args = [a.format(base=base) for a in RESUME_KEEP[prog]] + ["--resume", ck]
    if r.random() < 0.4:
        args += ARCH[prog]
    mode = "train"
    if prog == "char_lm":
        mode = pick(r, [("train", 60), ("eval", 20), ("sample", 10), ("train+save", 10)])
    elif r.random() < 0.15:
        mode = "train+save"
    if mode == "eval":
        args += ["--eval", os.path.join(base, "text.txt")]
    elif mode == "sample":
        args = [a for a in args if a not in ("--sample", "0")] + ["--sample", str(r.choice([1, 20]))]
        if "--sample" not in args[-2:]:
            args += ["--sample", "5"]
    else:
        args += ["--steps", str(r.choice([2, 3, 4, 8])), "--log-every", "1"]
        if r.random() < 0.3:
            args += ["--eval-every", "1"]
        if mode == "train+save":
            args += ["--checkpoint", os.path.join(cdir, "out.h5")]
    return prog, args, ck, "checkpoint: %s: %s" % (prog, "; ".join(desc)), [ck]


# ---------------------------------------------------------------- char_lm text inputs

def random_text(r, n):
    return "".join(r.choice("abcdefghij klmnop\n") for _ in range(n))


def text_variant(r, nr, ctx, path):
    """Writes a strange text file (or directory) at path; returns its description."""
    txt = base_text(r.randrange(5, 60), r.randrange(1 << 30))
    kind = r.choice(["utf16", "utf16be", "utf32", "latin1", "invalid utf8", "nul bytes", "all nul", "binary elf",
                     "random bytes", "empty", "one char", "two chars", "long line", "crlf", "only newlines",
                     "all 256 bytes", "one symbol repeated", "short", "directory", "directory with dotted names",
                     "empty directory", "directory of 1100 files", "symlink", "bom utf8", "high bytes"])
    if kind == "utf16":
        data = txt.encode("utf-16")
    elif kind == "utf16be":
        data = b"\xfe\xff" + txt.encode("utf-16-be")
    elif kind == "utf32":
        data = txt.encode("utf-32")
    elif kind == "latin1":
        data = (txt + " caf\u00e9 na\u00efve \u00e0 \u00ff\u00fe").encode("latin-1")
    elif kind == "invalid utf8":
        pieces = [b"\xc0\xaf", b"\xed\xa0\x80", b"\xff", b"\xe2\x82", b"\xf8\x88\x80\x80\x80", b"\x80"]
        b = bytearray(txt.encode())
        for _ in range(r.randrange(1, 20)):
            i = r.randrange(len(b) + 1)
            b[i:i] = r.choice(pieces)
        data = bytes(b)
    elif kind == "nul bytes":
        b = bytearray(txt.encode())
        for _ in range(r.randrange(1, 10)):
            b.insert(r.randrange(len(b) + 1), 0)
        data = bytes(b)
    elif kind == "all nul":
        data = b"\0" * r.choice([1, 100, 5000])
    elif kind == "binary elf":
        elf = open(os.path.join(ctx["bin_dir"], "char_lm"), "rb").read()
        data = elf[:r.randrange(16, min(len(elf), 200000))]
    elif kind == "random bytes":
        data = bytes(nr.integers(0, 256, size=r.choice([10, 300, 5000, 100000]), dtype=np.uint8))
    elif kind == "empty":
        data = b""
    elif kind == "one char":
        data = r.choice([b"a", b"\n", b"\0", b"\xff"])
    elif kind == "two chars":
        data = r.choice([b"ab", b"a\n", b"\r\n"])
    elif kind == "long line":
        n = int(1e6 * r.uniform(1, 10))
        data = bytes(nr.integers(97, 123, size=n, dtype=np.uint8))
        kind += " of %d bytes" % n
    elif kind == "crlf":
        data = txt.replace(" ", "\r\n").encode()
    elif kind == "only newlines":
        data = b"\n" * r.choice([5, 100, 1000])
    elif kind == "all 256 bytes":
        data = bytes(range(256)) * r.choice([1, 4])
    elif kind == "one symbol repeated":
        data = b"x" * r.choice([40, 200, 3000])
    elif kind == "short":
        data = txt.encode()[:r.randrange(1, 40)]
    elif kind == "bom utf8":
        data = b"\xef\xbb\xbf" + txt.encode()
    elif kind == "high bytes":
        data = bytes(nr.integers(128, 256, size=400, dtype=np.uint8))
    elif kind == "symlink":
        target = path + ".target"
        open(target, "wb").write(txt.encode())
        os.symlink(target if r.random() < 0.5 else "/nonexistent/target", path)
        return kind
    else:  # directories
        os.makedirs(path)
        if kind == "directory":
            for i in range(r.randrange(1, 6)):
                open(os.path.join(path, "part%d" % i), "w").write(base_text(r.randrange(1, 40), i))
            os.makedirs(os.path.join(path, "sub"))
            open(os.path.join(path, "sub", "x"), "w").write("nested")
        elif kind == "directory with dotted names":
            for i in range(3):
                open(os.path.join(path, "part%d.txt" % i), "w").write(txt)
            open(os.path.join(path, ".hidden"), "w").write(txt)
        elif kind == "directory of 1100 files":
            for i in range(1100):
                open(os.path.join(path, "f%04d" % i), "w").write("ab ")
        return kind
    with open(path, "wb") as f:
        f.write(data)
    return kind


def text_case(r, nr, ctx, cdir):
    base = ctx["base"]
    path = os.path.join(cdir, "input.txt")
    kind = text_variant(r, nr, ctx, path)
    mode = pick(r, [("train", 60), ("resume with it", 20), ("eval", 20)])
    args = ["--hidden", "8", "--batch", "2", "--seq", "8", "--steps", str(r.choice([1, 2, 3])), "--log-every", "1"]
    if mode == "train":
        args = ["--data", path] + args + ["--sample", str(r.choice([0, 0, 10])), "--eval-every", r.choice(["0", "1"])]
        if r.random() < 0.3:
            args += ["--prompt", r.choice(["\u00e9\u00e9", "zzz", "\t"]), "--temperature", r.choice(["0.01", "5"])]
    elif mode == "resume with it":
        args = ["--data", path, "--resume", os.path.join(base, "char_lm.h5"), "--steps", "3", "--sample", "0",
                "--optim", "adam"]
    else:
        args = ["--resume", os.path.join(base, "char_lm.h5"), "--eval", path]
    return "char_lm", args, path, "text: %s (%s)" % (kind, mode), [path]


# ---------------------------------------------------------------- timeseries CSV inputs

def csv_variant(r, nr, ctx, path):
    rows = r.choice([30, 100, 300])
    header = ["t", "value", "other"]
    table = [[str(i), "%.5g" % (np.sin(i / 5.0) * 3 + r.random()), str(r.randrange(50))] for i in range(rows)]
    eol, has_header, extra, kinds = "\n", True, b"", []
    for _ in range(r.choice([1, 1, 1, 2, 3])):
        kind = r.choice(["long line", "long number", "empty column", "missing column", "nan", "inf", "1e400",
                         "crlf", "header only", "quoted", "thousands of columns", "bom", "nul", "blank lines first",
                         "no header", "cr only", "spaces", "semicolons", "tabs", "hex float", "denormal", "huge finite",
                         "constant", "few rows", "empty file", "binary", "trailing comma", "duplicate header",
                         "latin1 header", "no final newline", "very many rows"])
        kinds.append(kind)
        try:  # a mutation that does not fit what earlier ones left is skipped
            i = r.randrange(len(table)) if table else 0
            if table and len(table[i]) < 3:  # a row an earlier mutation cut short: give it its columns back
                table[i] = (table[i] + ["1", "2", "3"])[:3]
            if kind == "long line" and table:
                n = r.choice([70000, 200000, 1000000])
                table[i] = table[i] + ["9" * 8] * (n // 9)
            elif kind == "long number" and table:
                table[i][1] = "1" + "0" * r.choice([40, 400, 70000])
            elif kind == "empty column" and table:
                table[i][r.randrange(3)] = ""
            elif kind == "missing column" and table:
                table[i] = table[i][:r.randrange(0, 2)]
            elif kind in ("nan", "inf", "1e400") and table:
                table[i][1] = {"nan": r.choice(["nan", "NaN", "-nan", "nan(0x1)"]), "inf": r.choice(["inf", "-Infinity", "INF"]),
                               "1e400": r.choice(["1e400", "-1e400", "1e39", "3.5e38"])}[kind]
            elif kind == "crlf":
                eol = "\r\n"
            elif kind == "cr only":
                eol = "\r"
            elif kind == "header only":
                table = []
            elif kind == "quoted" and table:
                for row in table[:r.randrange(1, rows + 1)]:
                    row[1] = '"%s"' % row[1]
                if r.random() < 0.5:
                    header = ['"%s"' % h for h in header]
            elif kind == "thousands of columns":
                ncol = r.choice([257, 1000, 5000])
                header = header + ["c%d" % k for k in range(ncol)]
                table = [row + [str(k % 10) for k in range(ncol)] for row in table]
            elif kind == "bom":
                extra = b"\xef\xbb\xbf"
            elif kind == "nul" and table:
                table[i][1] = table[i][1][:1] + "\0" + table[i][1][1:]
            elif kind == "blank lines first":
                extra = extra + b"\n" * r.randrange(1, 4)
            elif kind == "no header":
                has_header = False
            elif kind == "spaces" and table:
                table[i][1] = " " + table[i][1] + " "
            elif kind == "semicolons":
                table = [[";".join(row)] for row in table]
                header = [";".join(header)]
            elif kind == "tabs":
                table = [["\t".join(row)] for row in table]
            elif kind == "hex float" and table:
                table[i][1] = "0x1.8p3"
            elif kind == "denormal" and table:
                table[i][1] = "1e-45"
            elif kind == "huge finite":
                for row in table:
                    if len(row) > 1:
                        row[1] = r.choice(["3.4e38", "-3.4e38", row[1]])
            elif kind == "constant":
                for row in table:
                    if len(row) > 1:
                        row[1] = "5"
            elif kind == "few rows":
                table = table[:r.randrange(0, 25)]
            elif kind == "empty file":
                open(path, "wb").close()
                return "empty file"
            elif kind == "binary":
                open(path, "wb").write(bytes(nr.integers(0, 256, size=3000, dtype=np.uint8)))
                return "binary"
            elif kind == "trailing comma" and table:
                table[i] = table[i] + [""]
            elif kind == "duplicate header":
                header = ["value", "value", "value"] + header[3:]
            elif kind == "latin1 header":
                header = ["t", "valu\u00e9", "other"] + header[3:]
            elif kind == "very many rows":
                table = table + [[str(k), "%.3f" % (k % 17), "1"] for k in range(rows, rows + 50000)]
        except IndexError:
            kinds[-1] += " (skipped)"
    lines = ([",".join(header)] if has_header else []) + [",".join(row) for row in table]
    text = eol.join(lines) + ("" if "no final newline" in kinds else eol)
    with open(path, "wb") as f:
        f.write(extra + text.encode("latin-1" if "latin1 header" in kinds else "utf-8", errors="replace"))
    return ", ".join(kinds)


def csv_case(r, nr, ctx, cdir):
    path = os.path.join(cdir, "input.csv")
    kind = csv_variant(r, nr, ctx, path)
    column = r.choice(["value", "value", "1", "1", "0", "2", "other", "t", "nope", "", "-1", "99999999999",
                       "4294967297", "300", "2000", "c999", "1e3", " 1"])
    args = ["--data", path, "--column", column, "--hidden", "8", "--batch", "4", "--seq", str(r.choice([4, 12])),
            "--steps", str(r.choice([1, 2, 3])), "--log-every", "1", "--eval-every", r.choice(["0", "1"])]
    return "timeseries", args, path, "csv: %s; --column %r" % (kind, column), [path]


# ---------------------------------------------------------------- running and judging

def make_case(seed, i, ctx, cdir):
    r = random.Random("%d:%d" % (seed, i))
    nr = np.random.default_rng(r.getrandbits(64))
    kind = pick(r, [(ckpt_case, 64), (text_case, 17), (csv_case, 19)])
    return kind(r, nr, ctx, cdir)


def error_line(stderr):
    lines = [ln.strip() for ln in re.split(r"[\r\n]+", stderr) if ln.strip()]
    return lines[-1] if lines else ""


def judge(prog, rc, timed_out, stderr, target, inputs, is_ckpt):
    """(class, reason): valid, clean, unclear, crash, hang, sanitizer."""
    if timed_out:
        return "hang", "still running after the timeout"
    if SANITIZER.search(stderr):
        return "sanitizer", SANITIZER.search(stderr).group(0)
    if rc < 0:
        return "crash", "killed by signal %d (%s)" % (-rc, signal.Signals(-rc).name if -rc in signal.valid_signals() else "?")
    if rc not in (0, 1, 2):
        return "crash", "exit code %d" % rc
    if rc == 0:
        return "valid", ""
    if "HDF5-DIAG" in stderr:
        return "unclear", "HDF5's own error stack was printed"
    line = error_line(stderr)
    if not line:
        return "unclear", "exit %d with nothing on stderr" % rc
    if not line.startswith(prog + ": "):
        return "unclear", "the last line does not start with '%s: '" % prog
    named = [p for p in inputs if p in line]
    if is_ckpt and not named and DIVERGED.match(line[len(prog) + 2:]):
        return "clean", "diverged"  # a valid file whose values (say 1e30 weights) make the loss overflow
    if not named:
        return "unclear", "the message names none of the case's files"
    if is_ckpt and target in named and not CKPT_WHAT.search(line.replace(target, "")):
        return "unclear", "the message names the checkpoint but not what in it is wrong"
    return "clean", ""


def run_one(argv, cwd, timeout, env):
    out_path, err_path = os.path.join(cwd, "stdout.txt"), os.path.join(cwd, "stderr.txt")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
                             start_new_session=True)
        timed_out = False
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            rc = p.wait()
    with open(err_path, "rb") as f:
        f.seek(max(0, os.path.getsize(err_path) - 65536))
        stderr = f.read().decode(errors="replace")
    return rc, timed_out, stderr


ENV_KEYS = ("OMP_NUM_THREADS", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS")


def save_failure(res_dir, i, cdir, prog, argv, cls, reason, desc, rc, stderr, seed, env):
    dst = os.path.join(res_dir, "case-%d" % i)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(cdir, dst, symlinks=True)
    # the command, with the case directory's paths pointing into the saved copy
    saved = [a.replace(cdir, dst) for a in argv]
    with open(os.path.join(dst, "cmd.sh"), "w") as f:
        f.write("#!/bin/sh\n# %s\n# %s\ncd %s && %s %s\n" % (
            desc.replace("\n", " "), "or regenerate: fuzz.py ... --seed %d --only %d" % (seed, i), shlex.quote(dst),
            " ".join("%s=%s" % (k, shlex.quote(env[k])) for k in ENV_KEYS if k in env),
            " ".join(shlex.quote(a) for a in saved)))
    tail = "\n".join(stderr.splitlines()[-15:])
    with open(os.path.join(dst, "info.txt"), "w") as f:
        f.write("case %d (seed %d): %s: %s\nmutation: %s\nexit: %s\ncommand: %s\nstderr (last lines):\n%s\n" % (
            i, seed, cls, reason, desc, rc, " ".join(shlex.quote(a) for a in saved), tail))
    return dst, saved, tail


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True, help="directory holding char_lm, adding_problem and timeseries")
    ap.add_argument("--work", required=True, help="scratch directory (base/, cases/ and results/ inside it)")
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds before a case counts as a hang")
    ap.add_argument("--only", default="", help="comma-separated case numbers to run alone (reproduce a failure)")
    ap.add_argument("--verbose", "-v", action="store_true", help="one line per case")
    args = ap.parse_args()

    bin_dir = os.path.abspath(args.bin_dir)
    for p in PROGS:
        if not os.access(os.path.join(bin_dir, p), os.X_OK):
            sys.exit("fuzz: %s/%s is not an executable" % (bin_dir, p))
    work = os.path.abspath(args.work)
    base, cases_dir, res_dir = (os.path.join(work, d) for d in ("base", "cases", "results"))
    for d in (cases_dir, res_dir):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    env = child_env(work)
    make_bases(bin_dir, base, env)
    ctx = {"base": base, "bin_dir": bin_dir}
    todo = [int(x) for x in args.only.split(",") if x.strip()] or list(range(args.cases))
    counts = {k: 0 for k in ("valid", "clean", "unclear", "crash", "hang", "sanitizer", "diverged", "fuzzer")}
    failures = []
    lock = threading.Lock()
    h5lock = threading.Lock()  # h5py serialises HDF5 calls anyway; keep mutations whole
    start = time.time()

    def one(i):
        cdir = os.path.join(cases_dir, str(i))
        os.makedirs(cdir)
        try:
            with h5lock:
                prog, cargs, target, desc, inputs = make_case(args.seed, i, ctx, cdir)
        except Exception:  # the fuzzer's own bug: report it, and go on with the other cases
            with lock:
                counts["fuzzer"] += 1
                failures.append((i, "fuzzer error", traceback.format_exc().splitlines()[-1], "", [], "", "", ""))
                print("fuzz: case %d: could not be made (a bug of fuzz.py):\n%s" % (i, traceback.format_exc()), flush=True)
            shutil.rmtree(cdir, ignore_errors=True)
            return
        argv = [os.path.join(bin_dir, prog)] + cargs
        rc, timed_out, stderr = run_one(argv, cdir, args.timeout, env)
        cls, reason = judge(prog, rc, timed_out, stderr, target, inputs + [os.path.join(base, "text.txt"),
                                                                         os.path.join(base, "series.csv")],
                            desc.startswith("checkpoint"))
        with lock:
            counts[cls] += 1
            counts["diverged"] += reason == "diverged"
            if args.verbose:
                print("case %d: %s%s: %s | %s" % (i, cls, " (" + reason + ")" if reason else "", desc,
                                                  error_line(stderr)[:200]), flush=True)
        if cls not in ("valid", "clean"):
            dst, saved, tail = save_failure(res_dir, i, cdir, prog, argv, cls, reason, desc, rc, stderr, args.seed,
                                           env)
            with lock:
                failures.append((i, cls, reason, desc, saved, rc, tail, dst))
                print("fuzz: case %d: %s: %s\n  mutation: %s\n  command: %s\n  exit: %s\n  stderr: %s\n  saved in %s"
                      % (i, cls, reason, desc, " ".join(shlex.quote(a) for a in saved), rc,
                         "\n          ".join(tail.splitlines()[-5:]), dst), flush=True)
        shutil.rmtree(cdir, ignore_errors=True)

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        for fut in [ex.submit(one, i) for i in todo]:
            fut.result()
    wall = time.time() - start
    failures.sort()
    with open(os.path.join(res_dir, "failures.txt"), "w") as f:
        for i, cls, reason, desc, saved, rc, tail, dst in failures:
            f.write("case %d: %s: %s | exit %s | %s | %s | %s\n" % (i, cls, reason, rc, desc,
                                                                  " ".join(shlex.quote(a) for a in saved), dst))
    crashes = counts["crash"] + counts["sanitizer"]
    print("fuzz: %d cases, %d crashes, %d hangs, %d unclear errors, %d clean errors, %d valid runs "
          "(sanitizer reports %d of the crashes; diverged losses %d of the clean errors; seed %d, %d jobs, %.0f s)" % (
              len(todo), crashes, counts["hang"], counts["unclear"], counts["clean"], counts["valid"],
              counts["sanitizer"], counts["diverged"], args.seed, args.jobs, wall))
    if counts["fuzzer"]:
        print("fuzz: %d cases could not be made (bugs of fuzz.py itself)" % counts["fuzzer"])
    if failures:
        print("fuzz: failing cases are saved in %s (failures.txt lists them)" % res_dir)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
