"""A PyTorch classifier with log-sum-exp pooling, trained with smoothmax.

    python examples/pytorch_model.py [--small] [--no-compile]

The task is multiple-instance classification: each example is a *bag* of
feature vectors and its class is decided by its most telling instance. The
model embeds each instance, pools the bag with the smooth maximum
``t LSE(h / t)`` over the instance axis (between mean pooling, t -> inf, and max
pooling, t -> 0), classifies with a linear layer and ``log_softmax``, and is
trained with the negative log-likelihood.

1. The same model written with ``torch.logsumexp`` / ``torch.nn.functional``,
   from the same initial weights, trains to the same losses step for step.
2. ``torch.compile(model, fullgraph=True)``: smoothmax traces without graph
   breaks, forward and backward, and gives the eager losses.

``--small`` (or ``SMOOTHMAX_EXAMPLES_SMALL=1``) trains fewer steps;
``--no-compile`` skips part 2 (Inductor's first compile takes ~15 s on 2 cores).
"""

from __future__ import annotations

import copy
import os
import sys
import time
import warnings

import torch
import torch.nn.functional as F
from torch import nn

import smoothmax

SMALL = "--small" in sys.argv[1:] or os.environ.get("SMOOTHMAX_EXAMPLES_SMALL") == "1"
COMPILE = "--no-compile" not in sys.argv[1:]


class LSEPool(nn.Module):
    """Smooth-max pooling over ``dim``: ``t LSE(h / t)``."""

    def __init__(self, dim: int, temperature: float, use_smoothmax: bool = True) -> None:
        super().__init__()
        self.dim, self.temperature, self.use_smoothmax = dim, temperature, use_smoothmax

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.use_smoothmax:
            return smoothmax.logsumexp(h, axis=self.dim, temperature=self.temperature)
        return self.temperature * torch.logsumexp(h / self.temperature, dim=self.dim)


class BagClassifier(nn.Module):
    def __init__(self, features: int, hidden: int, classes: int, temperature: float = 0.5) -> None:
        super().__init__()
        self.embed = nn.Linear(features, hidden)
        self.pool = LSEPool(dim=1, temperature=temperature)
        self.head = nn.Linear(hidden, classes)
        self.use_smoothmax = True

    def forward(self, bags: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of each class, shape (batch, classes)."""
        h = torch.tanh(self.embed(bags))  # (batch, instances, hidden)
        logits = self.head(self.pool(h))  # (batch, classes)
        if self.use_smoothmax:
            return smoothmax.log_softmax(logits, axis=-1)
        return F.log_softmax(logits, dim=-1)


def reference_twin(model: BagClassifier) -> BagClassifier:
    """The same weights, written with torch.logsumexp and torch.nn.functional."""
    twin = copy.deepcopy(model)
    twin.use_smoothmax = False
    twin.pool.use_smoothmax = False
    return twin


def synthetic_bags(count: int, instances: int, features: int, classes: int, seed: int = 0):
    """Bags of noise; a bag of class c > 0 hides one instance of prototype c."""
    generator = torch.Generator().manual_seed(seed)
    prototypes = 3.0 * torch.randn(classes, features, generator=generator)
    bags = torch.randn(count, instances, features, generator=generator)
    labels = torch.randint(0, classes, (count,), generator=generator)
    slots = torch.randint(0, instances, (count,), generator=generator)
    hidden = labels > 0
    bags[hidden, slots[hidden]] += prototypes[labels[hidden]]
    return bags, labels


def train(model: nn.Module, bags, labels, steps: int, forward=None) -> tuple[list[float], list[float]]:
    """Adam on the NLL loss; ``forward`` (default ``model``) may be its compiled version.
    Returns the losses and the seconds of each step."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    forward = model if forward is None else forward
    losses, seconds = [], []
    for _ in range(steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = F.nll_loss(forward(bags), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        seconds.append(time.perf_counter() - start)
    return losses, seconds


def accuracy(model: nn.Module, bags, labels) -> float:
    with torch.no_grad():
        return (model(bags).argmax(dim=-1) == labels).double().mean().item()


def main() -> None:
    torch.manual_seed(0)
    features, hidden, classes, instances = 8, 16, 4, 10
    steps = 30 if SMALL else 200
    bags, labels = synthetic_bags(256 if SMALL else 1024, instances, features, classes)

    print("1. smoothmax vs torch.logsumexp / F.log_softmax, same initial weights")
    model = BagClassifier(features, hidden, classes)
    twin = reference_twin(model)
    ours, seconds = train(model, bags, labels, steps)
    theirs, _ = train(twin, bags, labels, steps)
    gap = max(abs(a - b) for a, b in zip(ours, theirs))
    for step in sorted({0, steps // 4, steps // 2, steps - 1}):
        print(f"   step {step:>4}: loss smoothmax {ours[step]:.6f}   torch {theirs[step]:.6f}")
    print(f"   largest loss difference over {steps} steps: {gap:.1e};"
          f" train accuracy {accuracy(model, bags, labels):.3f} (torch twin {accuracy(twin, bags, labels):.3f});"
          f" {steps} steps in {sum(seconds):.2f} s")
    assert ours[-1] < 0.5 * ours[0], "the model should learn"
    assert gap < 1e-4, gap
    weight_gap = max((p - q).abs().max().item() for p, q in zip(model.parameters(), twin.parameters()))
    assert weight_gap < 1e-4, weight_gap

    if not COMPILE:
        print("\n2. torch.compile skipped (--no-compile)")
        return
    print("\n2. torch.compile(model, fullgraph=True)")
    # Dynamo notes that it traces through array-api-compat's lru_cache'd type checks: harmless.
    warnings.filterwarnings("ignore", message="Dynamo detected a call to a `functools.lru_cache`")
    fresh = BagClassifier(features, hidden, classes)
    eager = copy.deepcopy(fresh)
    compiled = torch.compile(fresh, fullgraph=True)
    steps = min(steps, 10) if SMALL else steps
    compiled_losses, seconds = train(fresh, bags, labels, steps, forward=compiled)
    eager_losses, _ = train(eager, bags, labels, steps)
    gap = max(abs(a - b) for a, b in zip(compiled_losses, eager_losses))
    print(f"   first step (tracing and compiling) {seconds[0]:.1f} s, the others {sum(seconds[1:]):.2f} s;"
          f" final loss compiled"
          f" {compiled_losses[-1]:.6f} vs eager {eager_losses[-1]:.6f}; largest difference {gap:.1e}")
    assert gap < 1e-4, gap

    print("\nOK: smoothmax trains like torch.logsumexp + F.log_softmax, eager and compiled")


if __name__ == "__main__":
    main()
