#!/usr/bin/python3
"""loom <-> PyTorch through HDF5 checkpoints, for the LSTM, GRU and RNN cells.

1. loom trains char_lm a few steps and writes a checkpoint; h5py + load_state_dict
   put it into the equivalent torch model, whose loss on a text must equal
   loom's (char_lm --resume --eval) to 1e-4.
2. torch writes fresh weights into the same layout; loom loads them and must
   report torch's loss on the text, to 1e-4.
3. Bidirectional stacks (2 layers, variable unsorted lengths, a nonzero initial
   state): tests/bidir_export writes a loom stack's parameters, input and outputs;
   torch.nn.LSTM/GRU/RNN(bidirectional=True) loads the parameters by their
   state_dict names, runs the input packed (pack_padded_sequence, enforce_sorted=False)
   and must give loom's outputs at every real step, h_n (c_n) and h_last to 1e-5;
   then torch's own fresh weights go back through bidir_export into loom, the same.
Usage: torch_interop.py CHAR_LM WORKDIR TEXT [BIDIR_EXPORT]
(BIDIR_EXPORT defaults to $LOOM_BIDIR_EXPORT; part 3 is skipped, with a line, without either.)
"""
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import torch

from char_lm_torch import CELLS, CharModel, load_checkpoint  # tests/, this script's folder


def loom_eval(char_lm, ckpt, text_path):
    out = subprocess.run([char_lm, "--resume", ckpt, "--eval", text_path], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"char_lm --resume {ckpt} --eval failed:\n{out.stdout}{out.stderr}")
    m = re.search(r"loss ([0-9.]+) nats/char", out.stdout)
    return float(m.group(1))


def encode(text, vocab):
    index = {b: i for i, b in enumerate(vocab)}
    return torch.tensor([index[b] for b in text], dtype=torch.long)


def bidir_case(export, work, cell, tol=1e-5):
    """Part 3 for one cell: loom's bidirectional checkpoint in torch, then torch's weights in loom."""
    failures = 0
    torch_cls = CELLS[cell]

    def make(I, H, layers):
        model = torch.nn.Module()
        setattr(model, cell, torch_cls(I, H, num_layers=layers, bidirectional=True))  # the state_dict prefix
        return model

    def run(path, label, model=None):
        with h5py.File(path, "r") as f:
            io = {k: np.array(v) for k, v in f["io"].items()}
            state = {k: torch.from_numpy(np.array(v)) for k, v in f["model"].items()}
        lengths = io["lengths"].astype(np.int64)
        B, T = len(lengths), io["x"].shape[0] // len(lengths)
        I, H2 = io["x"].shape[1], io["y"].shape[1]
        H = H2 // 2
        layers = io["h_n"].shape[0] // (2 * B)
        if model is None:
            model = make(I, H, layers)
            model.load_state_dict(state, strict=True)  # lstm.weight_ih_l0, ..., lstm.weight_ih_l0_reverse, ...
        x = torch.from_numpy(io["x"]).reshape(T, B, I)
        h0 = torch.from_numpy(io["h0"]).reshape(2 * layers, B, H)
        init = (h0, torch.from_numpy(io["c0"]).reshape(2 * layers, B, H)) if cell == "lstm" else h0
        packed = torch.nn.utils.rnn.pack_padded_sequence(x, torch.from_numpy(lengths), enforce_sorted=False)
        with torch.no_grad():
            out, fin = getattr(model, cell)(packed, init)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=T)  # [T, B, 2H], zeros at padding
        h_n = fin[0] if cell == "lstm" else fin
        loom_y = io["y"].reshape(T, B, H2)
        real = np.arange(T)[:, None] < lengths[None, :]  # loom's padding rows hold h_last, torch's zeros
        errs = {"y": np.abs(y.numpy() - loom_y)[real].max(),
                "h_n": np.abs(h_n.numpy() - io["h_n"].reshape(2 * layers, B, H)).max(),
                "h_last": np.abs(torch.cat([h_n[-2], h_n[-1]], 1).numpy() - io["h_last"]).max()}
        if cell == "lstm":
            errs["c_n"] = np.abs(fin[1].numpy() - io["c_n"].reshape(2 * layers, B, H)).max()
        ok = all(e < tol for e in errs.values())
        print(f"bidirectional {cell}: {label}: max differences " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items())
              + (" ok" if ok else " MISMATCH"))
        return ok, model

    path = os.path.join(work, f"loom_bidir_{cell}.h5")
    subprocess.run([export, cell, path], check=True)
    ok, _ = run(path, "loom checkpoint in torch")
    failures += not ok

    # torch's own weights (a fresh model) loaded by loom, run on the same input and state
    torch.manual_seed(11)
    with h5py.File(path, "r") as f:
        I, H = f["io/x"].shape[1], f["io/y"].shape[1] // 2
        layers = f["io/h_n"].shape[0] // (2 * len(f["io/lengths"]))
    fresh = make(I, H, layers)
    wpath = os.path.join(work, f"torch_bidir_{cell}.h5")
    with h5py.File(wpath, "w") as f:
        f.attrs["format_version"] = np.int32(1)
        for k, v in fresh.state_dict().items():
            f[f"model/{k}"] = v.numpy()
    opath = os.path.join(work, f"loom_from_torch_bidir_{cell}.h5")
    subprocess.run([export, cell, opath, wpath], check=True)
    ok, _ = run(opath, "torch weights in loom", model=fresh)
    failures += not ok
    return failures


def main():
    char_lm, work, text_path = sys.argv[1:4]
    os.makedirs(work, exist_ok=True)
    text = open(text_path, "rb").read()
    snippet_path = os.path.join(work, "snippet.txt")
    open(snippet_path, "wb").write(text[:300])
    failures = 0
    for cell in ["lstm", "gru", "rnn"]:
        ckpt = os.path.join(work, f"loom_{cell}.h5")
        subprocess.run([char_lm, "--data", text_path, "--cell", cell, "--hidden", "16", "--layers", "2", "--embed", "8",
                        "--steps", "5", "--batch", "4", "--seq", "16", "--sample", "0", "--eval-every", "0",
                        "--checkpoint", ckpt], check=True, capture_output=True)
        model, vocab, config = load_checkpoint(ckpt)
        hidden, layers, embed = config["hidden"], config["layers"], config["embed"]
        ids = encode(text[:300], vocab)
        with torch.no_grad():
            torch_loss = model.loss(ids)
        loom_loss = loom_eval(char_lm, ckpt, snippet_path)
        ok = abs(torch_loss - loom_loss) < 1e-4
        failures += not ok
        print(f"{cell}: loom checkpoint in torch: torch {torch_loss:.6f} loom {loom_loss:.6f} {'ok' if ok else 'MISMATCH'}")

        # The reverse: weights torch made, in the same layout, loaded by loom.
        torch.manual_seed(7)
        fresh = CharModel(cell, len(vocab), embed, hidden, layers)
        tpath = os.path.join(work, f"torch_{cell}.h5")
        with h5py.File(tpath, "w") as f:
            f.attrs["format_version"] = np.int32(1)
            f["config/cell"] = cell if cell == "gru" else np.bytes_(cell)  # h5py str: variable-length
            for k, v in (("hidden", hidden), ("layers", layers), ("embed", embed)):
                f[f"config/{k}"] = np.int64(v)
            f["config/vocab"] = np.frombuffer(vocab, dtype=np.uint8)
            for k, v in fresh.state_dict().items():
                f[f"model/{k}"] = v.numpy()
        with torch.no_grad():
            torch_loss = fresh.loss(ids)
        loom_loss = loom_eval(char_lm, tpath, snippet_path)
        ok = abs(torch_loss - loom_loss) < 1e-4
        failures += not ok
        print(f"{cell}: torch weights in loom: torch {torch_loss:.6f} loom {loom_loss:.6f} {'ok' if ok else 'MISMATCH'}")
    export = sys.argv[4] if len(sys.argv) > 4 else os.environ.get("LOOM_BIDIR_EXPORT")
    if export:
        for cell in ["lstm", "gru", "rnn"]:
            failures += bidir_case(export, work, cell)
    else:
        print("bidirectional: skipped (no BIDIR_EXPORT argument and no LOOM_BIDIR_EXPORT)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
