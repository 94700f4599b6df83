"""Random draws of reference code replayed to ours, for the tests that compare the two."""

import torch


class ScriptedDraws:
    """Stands in for torch.rand, randn, randn_like and randint: returns the given draws
    ([(function name, value)]) in order, each only to the function and shape it was made for."""

    def __init__(self, draws, monkeypatch):
        self.draws = list(draws)
        monkeypatch.setattr(torch, "rand", lambda *size, **options: self.next("rand", size))
        monkeypatch.setattr(torch, "randn", lambda *size, **options: self.next("randn", size))
        monkeypatch.setattr(torch, "randn_like", lambda tensor: self.next("randn_like", tensor.shape))
        monkeypatch.setattr(torch, "randint", self.randint)

    def randint(self, low, high, size, device=None):
        value = self.next("randint", size)
        assert low <= value.min() and value.max() < high
        return value

    def next(self, function, size):
        expected_function, value = self.draws.pop(0)
        assert (function, tuple(size)) == (expected_function, tuple(value.shape))
        return value.clone()
