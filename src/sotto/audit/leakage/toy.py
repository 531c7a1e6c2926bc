"""Tier-0 traces with known answers, for checking the attack code against closed forms.

* :func:`intersection_epochs`: Martiny's setting reduced to epochs. In each epoch after Bob
  receives, Alice (cluster 0) always appears and every other user independently with probability
  ``p``. Without background epochs the disclosure score reduces to counting, and should single
  Alice out after about ln N / ln(1/p) epochs, plus zero to two (metadata-research §2.10); with
  as many background epochs (rates known) it needs no more.
* :func:`threshold_mix_rounds`: Danezis' statistical disclosure setting. Each round the target
  sends one message to one of ``m`` friends and the round carries ``b − 1`` other messages to
  uniform recipients. The separation of friends from non-friends at ``l`` standard deviations
  should come after about the §2.10 bound.

Both build :class:`~sotto.audit.leakage.sda.Events` directly and run the same functions the
benchmark runs on a tap.
"""

from __future__ import annotations

import numpy as np

from sotto.audit.leakage import sda

_EPOCH = 10.0


def _events(
    times: np.ndarray, clusters: np.ndarray, n: int, duration: float, targets: np.ndarray
) -> sda.Events:
    order = np.argsort(times, kind="stable")
    total = np.bincount(clusters, minlength=n).astype(np.float64)
    return sda.Events(times[order], clusters[order], total, duration, {0: targets}, n, {})


def intersection_epochs(
    users: int, p: float, seed: int, *, background: bool = False, max_epochs: int = 60
) -> int | None:
    """Epochs until the attack ranks Alice uniquely first (None if not within ``max_epochs``)."""
    rng = np.random.default_rng(seed)
    times: list[np.ndarray] = []
    clusters: list[np.ndarray] = []
    target_times = []
    bob = users - 1
    stride = 2 if background else 1
    for e in range(stride * max_epochs):
        start = e * _EPOCH
        present = np.nonzero(rng.random(users - 2) < p)[0] + 1  # everyone but Alice (0) and Bob
        if e % stride == 0:  # a target epoch: Bob received at its start, Alice's receipt follows
            target_times.append(start)
            present = np.append(present, 0)
        times.append(start + rng.uniform(0.1, _EPOCH - 0.1, len(present)))
        clusters.append(present)
    ev = _events(
        np.concatenate(times),
        np.concatenate(clusters).astype(np.int64),
        users,
        stride * max_epochs * _EPOCH,
        np.array(target_times),
    )
    pushes = np.array(target_times)
    return sda.messages_to_identify(
        ev, (bob, 0, 0), pushes, np.zeros(len(pushes), dtype=bool), window=_EPOCH, budget=max_epochs
    )


def threshold_mix_rounds(
    users: int, batch: int, friends: int, *, seed: int, sigmas: float = 3.0, max_rounds: int = 20_000
) -> int | None:
    """Rounds until the friends' mean window count exceeds the non-friends' by ``sigmas`` times
    the sum of their standard deviations, measured with :func:`sda.window_counts`."""
    rng = np.random.default_rng(seed)
    friend_ids = np.arange(1, friends + 1)
    rounds = np.arange(max_rounds, dtype=np.float64) * _EPOCH
    friend = rng.choice(friend_ids, max_rounds)
    others = rng.integers(1, users, (max_rounds, batch - 1))
    times = np.repeat(rounds, batch) + rng.uniform(0.1, _EPOCH - 0.1, max_rounds * batch)
    clusters = np.concatenate([friend[:, None], others], axis=1).reshape(-1)
    ev = _events(times, clusters.astype(np.int64), users, max_rounds * _EPOCH, rounds)
    non_friends = np.ones(users, dtype=bool)
    non_friends[0] = False
    non_friends[friend_ids] = False
    t = 1
    while t <= max_rounds:
        counts = sda.window_counts(ev, rounds[:t], _EPOCH)
        f, o = counts[friend_ids], counts[non_friends]
        if f.mean() - o.mean() >= sigmas * (f.std() + o.std()):
            # refine by bisection between t/2 and t
            lo, hi = t // 2, t
            while hi - lo > max(1, hi // 100):
                mid = (lo + hi) // 2
                c = sda.window_counts(ev, rounds[:mid], _EPOCH)
                f, o = c[friend_ids], c[non_friends]
                if f.mean() - o.mean() >= sigmas * (f.std() + o.std()):
                    hi = mid
                else:
                    lo = mid
            return hi
        t *= 2
    return None
