"""Adam (Kingma & Ba) over a list of arrays, with its state as named arrays for checkpoints."""

import numpy as np


class Adam:
    """Adam over a list of arrays, updated in place."""

    def __init__(self, params, lr, beta1=0.9, beta2=0.999, eps=1e-8):
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.m = [np.zeros_like(p, dtype=np.float64) for p in params]
        self.v = [np.zeros_like(p, dtype=np.float64) for p in params]
        self.t = 0

    def state(self):
        """Moments and step count as named arrays (for checkpoints)."""
        arrays = {"adam/t": np.array(self.t)}
        for i, (m, v) in enumerate(zip(self.m, self.v)):
            arrays[f"adam/m{i}"], arrays[f"adam/v{i}"] = m, v
        return arrays

    @classmethod
    def from_state(cls, arrays, lr):
        """An Adam continuing from :meth:`state`'s arrays."""
        count = sum(1 for key in arrays if key.startswith("adam/m"))
        adam = cls([arrays[f"adam/m{i}"] for i in range(count)], lr)
        adam.m = [np.array(arrays[f"adam/m{i}"]) for i in range(count)]
        adam.v = [np.array(arrays[f"adam/v{i}"]) for i in range(count)]
        adam.t = int(arrays["adam/t"])
        return adam

    def step(self, params, grads, lr):
        self.t += 1
        c1, c2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            p -= lr * (m / c1) / (np.sqrt(v / c2) + self.eps)
