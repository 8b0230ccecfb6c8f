"""Synthetic judges with known utilities, for tests, benchmarks and power checks."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtr

from steerlab.errors import InputError
from steerlab.prefs._pairs import PairCounts


@dataclass(eq=False)
class ThurstonianOracle:
    """Answers pairs by sampling from a Thurstonian model with known parameters.

    P(first chosen) = Phi((mu_a - mu_b) / sqrt(sigma_a^2 + sigma_b^2) + position_bias), so
    ``position_bias > 0`` favours the first-shown item (in probit units).

    Attributes:
        mu: True utilities, shape (n,).
        sigma: True noise scales, shape (n,).
        rng: Random generator used for sampling.
        position_bias: Probit shift in favour of the first-shown item.
        unparseable_rate: Probability that an answer is unparseable.
    """

    mu: np.ndarray
    sigma: np.ndarray
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    position_bias: float = 0.0
    unparseable_rate: float = 0.0
    calls: int = 0

    def prob_first_wins(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """True probability that ``first[k]`` is chosen (the oracle's own prediction)."""
        sd = np.sqrt(self.sigma[first] ** 2 + self.sigma[second] ** 2)
        return ndtr((self.mu[first] - self.mu[second]) / sd + self.position_bias)

    def __call__(
        self, first: np.ndarray, second: np.ndarray, samples: int = 1
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ask each ordered pair ``samples`` times; returns (first_wins, second_wins, unparseable)."""
        first, second = np.asarray(first), np.asarray(second)
        self.calls += int(first.size) * samples
        unp = self.rng.binomial(samples, self.unparseable_rate, size=first.size)
        wa = self.rng.binomial(samples - unp, self.prob_first_wins(first, second))
        return wa, samples - unp - wa, unp

    def counts(self, item_ids: tuple[str, ...], first: np.ndarray, second: np.ndarray, samples: int = 1) -> PairCounts:
        """Ask the pairs and wrap the answers as :class:`PairCounts`."""
        if len(item_ids) != self.mu.size:
            raise InputError(f"{len(item_ids)} ids for an oracle over {self.mu.size} items")
        return PairCounts(item_ids, first, second, *self(first, second, samples))


def random_orientation(pairs: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split unordered pairs (m, 2) into (first, second), each pair in a random order."""
    flip = rng.random(len(pairs)) < 0.5
    first = np.where(flip, pairs[:, 1], pairs[:, 0])
    second = np.where(flip, pairs[:, 0], pairs[:, 1])
    return first, second
