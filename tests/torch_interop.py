#!/usr/bin/python3
"""loom <-> PyTorch through HDF5 checkpoints, for the LSTM, GRU and RNN cells.

1. loom trains char_lm a few steps and writes a checkpoint; h5py + load_state_dict
   put it into the equivalent torch model, whose loss on a text must equal
   loom's (char_lm --resume --eval) to 1e-4.
2. torch writes fresh weights into the same layout; loom loads them and must
   report torch's loss on the text, to 1e-4.
Usage: torch_interop.py CHAR_LM WORKDIR TEXT
"""
import os
import re
import subprocess
import sys

import h5py
import numpy as np
import torch


class CharModel(torch.nn.Module):
    def __init__(self, cell, vocab, embed, hidden, layers):
        super().__init__()
        self.cell = cell
        self.embedding = torch.nn.Embedding(vocab, embed)
        rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[cell](embed, hidden, num_layers=layers)
        setattr(self, cell, rnn)  # the attribute name gives the state_dict prefix: lstm.weight_ih_l0, ...
        self.head = torch.nn.Linear(hidden, vocab)

    def loss(self, ids):
        x = self.embedding(ids[:-1]).unsqueeze(1)  # [T, 1, E], sequence first like loom
        y, _ = getattr(self, self.cell)(x)
        logits = self.head(y.squeeze(1))
        return torch.nn.functional.cross_entropy(logits, ids[1:]).item()


def loom_eval(char_lm, ckpt, text_path):
    out = subprocess.run([char_lm, "--resume", ckpt, "--eval", text_path], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"char_lm --resume {ckpt} --eval failed:\n{out.stdout}{out.stderr}")
    m = re.search(r"loss ([0-9.]+) nats/char", out.stdout)
    return float(m.group(1))


def encode(text, vocab):
    index = {b: i for i, b in enumerate(vocab)}
    return torch.tensor([index[b] for b in text], dtype=torch.long)


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
        with h5py.File(ckpt, "r") as f:
            vocab = bytes(f["config/vocab"][()])
            hidden, layers, embed = (int(f[f"config/{k}"][()]) for k in ("hidden", "layers", "embed"))
            state = {k: torch.from_numpy(np.array(v)) for k, v in f["model"].items()}
        model = CharModel(cell, len(vocab), embed, hidden, layers)
        model.load_state_dict(state, strict=True)
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
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
