"""The models the example inference service serves, and the one code path that
runs them: `infer(name, payload)`.

Three small PyTorch models with random weights (Debian's python3-torch; nothing
is downloaded) and different compute profiles on a CPU:

    mlp   three dense layers (256 -> 512 -> 512 -> 10): a few GEMMs, the
          cheapest request (~0.3 ms of one core on the study's VM)
    cnn   three conv layers on a 3x32x32 image: many short kernels and large
          intermediate activations, allocator churn (~1.6 ms)
    lstm  an LSTM (hidden 128) over 32 steps of 32 features: sequential,
          latency-bound small GEMMs (~1.9 ms)

A request's payload is the raw input: float32 values, little-endian, of a batch
of one or more items of the model's input shape (INPUT_SHAPES). The reply is a
small JSON-able dict. Every concurrency model of server.py calls infer(); the
process pool calls it in its workers.
"""
import math
import os
import random
import time
from array import array

INPUT_SHAPES = {"mlp": (256,), "cnn": (3, 32, 32), "lstm": (32, 32)}
NAMES = tuple(INPUT_SHAPES)

_models = {}
_torch = None


def _build(torch, name):
    nn = torch.nn
    if name == "mlp":
        return nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(),
                             nn.Linear(512, 10))
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(128, 10))
    if name == "lstm":
        class LSTMHead(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(32, 128, batch_first=True)
                self.head = nn.Linear(128, 10)

            def forward(self, x):
                out, _ = self.lstm(x)
                return self.head(out[:, -1])
        return LSTMHead()
    raise KeyError(name)


_threads = 1


def load(torch_threads=1, seed=0):
    """Imports torch, builds every model (random weights, eval mode) once per
    process. A process pool forked after this shares them copy-on-write."""
    global _torch, _threads
    import torch
    _threads = torch_threads
    torch.set_num_threads(torch_threads)
    torch.manual_seed(seed)
    with torch.inference_mode():
        for name in NAMES:
            _models[name] = _build(torch, name).eval()
    _torch = torch
    return _models


def thread_init():
    """Call first in every thread that runs infer(). torch's intra-op pool is
    OpenMP, whose thread count is a per-thread setting: a new thread starts
    from the default (one per CPU), not from what load() set in the main
    thread, and its first parallel op would start a team of OpenMP threads."""
    if _torch is not None:
        _torch.set_num_threads(_threads)


def item_floats(name):
    return math.prod(INPUT_SHAPES[name])


def infer(name, payload):
    """Runs model NAME on PAYLOAD (float32 bytes of a batch); returns a dict.
    Raises KeyError for an unknown model, ValueError for a malformed payload."""
    torch = _torch
    if name not in _models:
        raise KeyError(name)
    per_item = item_floats(name) * 4
    if not payload or len(payload) % per_item:
        raise ValueError(f"payload of {len(payload)} bytes is not a batch of "
                         f"{INPUT_SHAPES[name]} float32 items")
    batch = len(payload) // per_item
    t0 = time.perf_counter_ns()
    c0 = time.thread_time_ns()
    # frombuffer shares the request's bytes; the model's first op copies
    x = torch.frombuffer(bytearray(payload), dtype=torch.float32).view(batch, *INPUT_SHAPES[name])
    with torch.inference_mode():
        y = _models[name](x)
        top = y.argmax(1).tolist()
    return {"model": name, "batch": batch, "top": top, "pid": os.getpid(),
            "infer_ns": time.perf_counter_ns() - t0, "infer_cpu_ns": time.thread_time_ns() - c0}


def random_payload(name, batch=1, rng=None):
    """A request body for NAME: BATCH items of uniform [0, 1) floats (no torch
    needed: the load generator uses this)."""
    rng = rng or random.Random(0)
    n = item_floats(name) * batch
    return array("f", (rng.random() for _ in range(n))).tobytes()
