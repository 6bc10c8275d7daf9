"""Held-out scoring (SPEC §7): mean next-token loss per token, per cluster.

Each held-out document is scored on its own, as a trainer sees it (``[BOS] + tokens + [EOS]`` with
the schedule's delimiters), in consecutive non-overlapping windows of the model's context length
``C``: window ``j`` feeds tokens ``[jC, jC + C)`` and predicts tokens ``[jC + 1, jC + C + 1)``, so
a document of ``L`` tokens gives ``L - 1`` predictions and every window starts with no earlier
context. A cluster's loss is the sum of its documents' token losses over their predictions; the
overall mean weighs every token alike, the cluster-balanced mean every cluster alike (what
ClusterClip aims to lower).

This is what ``model(input_ids=window, labels=window).loss`` times ``len(window) - 1`` gives for
each window of ``C + 1`` tokens, summed: anyone re-scores a saved proxy with ``transformers``
alone (a test does). Here windows are batched (longest first, padded on the right, padding
ignored) and computed in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scores:
    """Per scored group (a cluster, or the target texts): ``tokens`` predicted and ``loss`` (mean per token)."""

    groups: np.ndarray
    tokens: np.ndarray
    loss: np.ndarray

    @property
    def overall(self) -> float:
        """Token-weighted mean over every prediction."""
        total = int(self.tokens.sum())
        return float((self.loss * self.tokens).sum() / total) if total else float("nan")

    @property
    def balanced(self) -> float:
        """Mean of the groups' losses (each group counts once)."""
        return float(self.loss.mean()) if len(self.loss) else float("nan")

    def select(self, mask: np.ndarray) -> "Scores":
        return Scores(self.groups[mask], self.tokens[mask], self.loss[mask])


def windows_of(lengths: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The windows of documents of ``lengths`` tokens: ``(document, first token, predictions)`` of each, in
    document order; a document of ``L`` tokens gives ``ceil((L - 1) / C)`` windows and ``L - 1`` predictions."""
    lengths = np.asarray(lengths, dtype=np.int64)
    preds = np.maximum(lengths - 1, 0)
    per_doc = -(-preds // context)
    doc: np.ndarray = np.repeat(np.arange(len(lengths)), per_doc)
    first_window = np.cumsum(per_doc) - per_doc
    j = np.arange(len(doc)) - np.repeat(first_window, per_doc)
    start = j * context
    return doc, start, np.minimum(preds[doc] - start, context)


def document_losses(model, docs: list[np.ndarray], context: int, *, device: str = "cpu", batch: int = 16,
                    on_tokens=None) -> tuple[np.ndarray, np.ndarray]:
    """``(sum of token losses, predictions)`` of every document (float64, int64), windows as in the module
    docstring; ``on_tokens(n)`` is called as predictions are scored (progress)."""
    import torch
    import torch.nn.functional as F

    lengths = np.array([len(d) for d in docs], dtype=np.int64)
    doc, start, n_pred = windows_of(lengths, context)
    sums: np.ndarray = np.zeros(len(docs), dtype=np.float64)
    order = np.argsort(-n_pred, kind="stable")  # longest first: little padding per batch
    model.eval()
    with torch.no_grad():
        for a in range(0, len(order), batch):
            idx = order[a: a + batch]
            width = int(n_pred[idx].max())
            x: np.ndarray = np.zeros((len(idx), width), dtype=np.int64)
            y: np.ndarray = np.full((len(idx), width), -100, dtype=np.int64)
            for r, w in enumerate(idx):
                tokens = docs[doc[w]][start[w]: start[w] + n_pred[w] + 1]
                x[r, : n_pred[w]] = tokens[:-1]
                y[r, : n_pred[w]] = tokens[1:]
            logits = model(input_ids=torch.from_numpy(x).to(device)).logits.float()
            token_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(y).to(device).reshape(-1),
                                         ignore_index=-100, reduction="none").reshape(len(idx), width)
            per_window = token_loss.double().sum(dim=1).cpu().numpy()
            np.add.at(sums, doc[idx], per_window)
            if on_tokens is not None:
                on_tokens(int(n_pred[idx].sum()))
    return sums, np.maximum(lengths - 1, 0)


def group_scores(sums: np.ndarray, predictions: np.ndarray, groups: np.ndarray) -> Scores:
    """Per group (ascending): predictions and mean loss per prediction; groups with no prediction are left out."""
    groups = np.asarray(groups, dtype=np.int64)
    ids, inverse = np.unique(groups, return_inverse=True)
    tokens = np.bincount(inverse, weights=predictions, minlength=len(ids)).astype(np.int64)
    loss_sum = np.bincount(inverse, weights=sums, minlength=len(ids))
    keep = tokens > 0
    return Scores(ids[keep], tokens[keep], loss_sum[keep] / tokens[keep])
