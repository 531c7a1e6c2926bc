"""Scores: ranking quality, AUC, mutual information. Plain numpy, checked by unit tests."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

H = TypeVar("H", bound=Hashable)


def ranking_scores(ranked: Sequence[H], truth: AbstractSet[H]) -> tuple[float, float, float]:
    """(top-1 correct, average precision, recall at |truth|) of one ranked candidate list
    (candidates are users' numbers, or any names)."""
    if not truth:
        return 0.0, 0.0, 0.0
    hits = 0
    precision_sum = 0.0
    for i, candidate in enumerate(ranked, start=1):
        if candidate in truth:
            hits += 1
            precision_sum += hits / i
    top1 = 1.0 if ranked and ranked[0] in truth else 0.0
    k = len(truth)
    recall = sum(1 for c in ranked[:k] if c in truth) / k
    return top1, precision_sum / k, recall


def auc(scores: NDArray[np.float64], labels: NDArray[np.bool_]) -> float:
    """Area under the ROC curve (Mann–Whitney, ties counted half); 0.5 when one class is empty."""
    positives = int(labels.sum())
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return 0.5
    _, inverse, counts = np.unique(scores, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    average_rank = ends - (counts - 1) / 2.0  # 1-based average rank of each distinct value
    ranks = average_rank[inverse]
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0) / (positives * negatives))


def mutual_information(x: Iterable[int], y: Iterable[int]) -> float:
    """Plug-in estimate of I(X; Y) in bits from paired samples."""
    xs = np.asarray(list(x), dtype=np.int64)
    ys = np.asarray(list(y), dtype=np.int64)
    if len(xs) == 0:
        return 0.0
    _, xi = np.unique(xs, return_inverse=True)
    _, yi = np.unique(ys, return_inverse=True)
    joint = np.zeros((xi.max() + 1, yi.max() + 1))
    np.add.at(joint, (xi, yi), 1.0)
    joint /= joint.sum()
    px = joint.sum(axis=1, keepdims=True)
    py = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float((joint[nz] * np.log2(joint[nz] / (px @ py)[nz])).sum())


def entropy_bits(x: Iterable[int]) -> float:
    values = np.asarray(list(x), dtype=np.int64)
    if len(values) == 0:
        return 0.0
    _, counts = np.unique(values, return_counts=True)
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum())


def percentile_or_none(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values), q)) if len(values) else None


def intersection_bound(users: int, p: float) -> float:
    """Epochs after which only the true partner remains in every epoch (metadata-research §2.10)."""
    return math.log(users) / math.log(1.0 / p)


def sda_bound(users: int, batch: int, friends: int, sigmas: float = 3.0) -> float:
    """Rounds to separate a friend from a non-friend at ``sigmas`` standard deviations
    (metadata-research §2.10, normal approximation of Danezis' statistical disclosure)."""
    r = (batch - 1) / users
    m = friends
    return m * m * sigmas * sigmas * (math.sqrt(r) + math.sqrt(r + (m - 1) / (m * m))) ** 2
