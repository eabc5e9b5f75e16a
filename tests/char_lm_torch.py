"""char_lm's model in PyTorch, and a char_lm checkpoint loaded into it.

Shared by tests/torch_interop.py and bench/time_to_quality.py. char_lm writes its
parameters under PyTorch's state_dict names and shapes (embedding.weight,
<cell>.weight_ih_l0, ..., head.weight, head.bias), so the mapping is the identity:
load_state_dict(strict=True) on a model whose submodules carry those names."""
import h5py
import numpy as np
import torch

CELLS = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}


class CharModel(torch.nn.Module):
    """Embedding -> recurrent stack (sequence first, like loom) -> linear head."""

    def __init__(self, cell, vocab, embed, hidden, layers):
        super().__init__()
        self.cell = cell
        self.embedding = torch.nn.Embedding(vocab, embed)
        setattr(self, cell, CELLS[cell](embed, hidden, num_layers=layers))  # the state_dict prefix: lstm.weight_ih_l0, ...
        self.head = torch.nn.Linear(hidden, vocab)

    def forward(self, idx, state=None):
        """idx [T, B] -> logits [T*B, V] (row t*B+b, time-major as loom's) and the final state."""
        y, state = getattr(self, self.cell)(self.embedding(idx), state)
        return self.head(y.reshape(-1, y.shape[-1])), state

    def loss(self, ids):
        """Mean cross-entropy of predicting ids[1:] from ids[:-1], one stream from a zero state."""
        logits, _ = self(ids[:-1].unsqueeze(1))
        return torch.nn.functional.cross_entropy(logits, ids[1:]).item()


def load_checkpoint(path):
    """A char_lm checkpoint as (model with its weights, vocabulary bytes, the file's /config as a dict)."""
    with h5py.File(path, "r") as f:
        vocab = bytes(f["config/vocab"][()])
        config = {k: f[f"config/{k}"][()] for k in f["config"] if k != "vocab"}
        state = {k: torch.from_numpy(np.array(v)) for k, v in f["model"].items()}
    cell = config["cell"]
    config["cell"] = cell.decode() if isinstance(cell, bytes) else str(cell)
    for k in ("hidden", "layers", "embed", "batch", "seq"):
        if k in config:
            config[k] = int(config[k])
    model = CharModel(config["cell"], len(vocab), config["embed"], config["hidden"], config["layers"])
    model.load_state_dict(state, strict=True)
    return model, vocab, config
