"""Adam (Kingma & Ba) over a list of arrays, with its state as named arrays for checkpoints."""

import numpy as np
from numba import njit


class Adam:
    """Adam over a list of contiguous arrays, updated in place."""

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
        """One step on ``params`` in place: one pass over each parameter, its gradient and moments."""
        self.t += 1
        c1, c2 = 1 - self.beta1**self.t, 1 - self.beta2**self.t
        for k, (p, g) in enumerate(zip(params, grads)):
            self.m[k], self.v[k] = _laid_out_like(self.m[k], p), _laid_out_like(self.v[k], p)
            g = _laid_out_like(np.broadcast_to(np.asarray(g, dtype=np.float64), p.shape), p)
            _update(*(a.ravel(order="K") for a in (p, g, self.m[k], self.v[k])),
                    float(lr), self.beta1, self.beta2, c1, c2, self.eps)


def _laid_out_like(a, like):
    """``a`` itself when it has the memory layout of ``like``, else a copy laid out like it (so that
    both flatten in memory order element for element)."""
    if a.strides == like.strides:
        return a
    out = np.empty_like(like, dtype=np.float64)
    out[...] = a
    return out


@njit(cache=True, error_model="numpy")
def _update(p, g, m, v, lr, beta1, beta2, c1, c2, eps):
    """The Adam update of flat p with gradient g and moments m, v, in place, in the textbook order."""
    for i in range(p.size):
        m[i] = beta1 * m[i] + (1 - beta1) * g[i]
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
        p[i] -= lr * (m[i] / c1) / (np.sqrt(v[i] / c2) + eps)
