"""Ten one-vs-all binary networks as one 10-class model.

Not an architecture of its own (it is not registered): ``fashionbench
one-vs-all`` trains ten binary networks of one architecture, fits a Platt
scaling (Platt 1999) of each network's logit margin on the validation split,
and saves this module as the run's model. Its outputs are normalized log
probabilities, so that softmax of them gives the calibrated probabilities, and
every command that takes a finished run (evaluate, report, audit, ensemble,
predict, export) uses a one-vs-all run as it uses any other.
"""

from __future__ import annotations

import torch
from torch import nn


class OneVsAllNetwork(nn.Module):
    """``members[c]`` scores class c against the rest (output 1: class c); class c's
    probability is sigmoid(a[c] * margin + b[c]), normalized over the ten classes."""

    def __init__(self, members: list[nn.Module], a: torch.Tensor | None = None,
                 b: torch.Tensor | None = None):
        super().__init__()
        self.members = nn.ModuleList(members)
        self.register_buffer("a", torch.ones(len(members)) if a is None else torch.as_tensor(a).float())
        self.register_buffer("b", torch.zeros(len(members)) if b is None else torch.as_tensor(b).float())

    @staticmethod
    def margins(logits: list[torch.Tensor]) -> torch.Tensor:
        """(N, classes): each member's logit margin for its class, from its (N, 2) logits."""
        logits = [z.float() for z in logits]
        return torch.stack([z[:, 1] - z[:, 0] for z in logits], 1)

    def log_probs(self, margins: torch.Tensor) -> torch.Tensor:
        """The normalized log probabilities of the members' ``margins`` (what ``forward``
        returns; one-vs-all calls it on the margins it already has)."""
        # In float32 and log space: a sigmoid far in its tail is 0 in bf16 or float32,
        # and ten zeros cannot be normalized.
        log_p = nn.functional.logsigmoid(self.a * margins + self.b)
        return log_p - log_p.logsumexp(1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_probs(self.margins([member(x) for member in self.members]))
