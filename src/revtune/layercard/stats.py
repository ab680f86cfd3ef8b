"""Streaming sums of one adapter target's inputs and output gradients, and the per-module quantities.

The quantities are ours: LAYERCARD.md derives them from the abstract of Xu et al. (arXiv 2602.04019),
which names resnorm, activation energy and coupling but whose formulas we could not read. Notation:
x_i the module's input at non-pad token i, g_i = d(sum of losses)/d(module output) there, N tokens,
Sigma = (1/N) sum x x^T, G = (1/N) sum g x^T: the weight gradient of the summed loss divided by the N
non-pad tokens (one loss per sequence for intent; for revise the loss covers response tokens while N
counts all, a factor common to every block: rankings keep, absolute gains carry it).

Everything is computed from one eigendecomposition of Sigma, Sigma = V diag(s) V^T, and the gradient
projected on its modes (G V): resnorm, the cross-fitted resnorm, the rank-r share, the budgeted gain
and the adapter direction are then sums over modes. Sums are kept in fp32 and grow with d_in, never
with the number of batches. While N < d_in the token rows themselves are kept (the Gram form): Sigma is
singular then, and the same mode quantities come from the N x N token Gram matrix instead. Sums stay on
the device the model runs on; ``max_bytes`` (see :mod:`.probe`) bounds them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from .options import GRAM_MODES



@dataclass
class Spectrum:
    """Sigma's non-zero modes and one module's gradient on them (all fp64 or the eig dtype)."""

    s: torch.Tensor  # (k,) eigenvalues of Sigma, >= 0
    v: torch.Tensor  # (d_in, k) eigenvectors
    gv: torch.Tensor  # (d_out, k) G V, all tokens
    gv_a: torch.Tensor  # G_A V, tokens of sequence half A
    gv_b: torch.Tensor
    d_in: int  # modes beyond k have eigenvalue 0 (Gram form, N < d_in)


@dataclass
class ModuleSignals:
    """One module's row of the card (see LAYERCARD.md for each formula)."""

    res2: float  # tr(G Sigma_lam^-1 G^T), plug-in
    res2_cf: float  # tr(G_A Sigma_lam^-1 G_B^T), cross-fitted, clipped at 0
    res2_rank: float  # sum of the top-r squared singular values of G Sigma_lam^-1/2
    energy: float  # tr(Sigma)
    cond: float  # (s_max + lam) / (s_min + lam)
    eff_rank: float  # tr(Sigma)^2 / tr(Sigma^2)
    gain: float  # 0.5 tr(G Sigma^-1 [I - (I - Sigma/s_max)^(2T)] G^T), plug-in
    gain_cf: float  # the same with G_A, G_B, clipped at 0
    lam: float

    def as_dict(self) -> dict:
        return {k: float(v) for k, v in self.__dict__.items()}


class InputSums:
    """Sums over one module input; modules fed the same tensor (q, k, v) share one of these."""

    def __init__(self, d_in: int, gram: str = "auto", dtype: torch.dtype = torch.float32):
        if gram not in GRAM_MODES:
            raise ValueError(f"gram must be one of {GRAM_MODES}, got {gram!r}")
        self.d_in, self.gram, self.dtype = d_in, gram, dtype
        self.n = 0
        self.xx: torch.Tensor | None = None
        self.rows: list[torch.Tensor] = []
        self.halves: list[torch.Tensor] = []
        self.modules: list[ModuleSums] = []

    @property
    def in_gram_form(self) -> bool:
        return self.xx is None and self.gram != "never"

    def add(self, x: torch.Tensor, half_a: torch.Tensor) -> None:
        x = x.detach().to(self.dtype)
        self.n += len(x)
        if self.in_gram_form:
            self.rows.append(x)
            self.halves.append(half_a)
        else:
            self.xx = x.T @ x if self.xx is None else self.xx.addmm_(x.T, x)

    def settle(self) -> None:
        """After a batch: leave the Gram form once N exceeds d_in (memory stays bounded by d_in^2)."""
        if self.gram == "auto" and self.in_gram_form and self.n > self.d_in:
            x, half = torch.cat(self.rows), torch.cat(self.halves)
            self.xx = x.T @ x
            for module in self.modules:
                module.to_covariance(x, half)
            self.rows, self.halves = [], []

    def spectrum_basis(self, dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(s, V, X V or None): Sigma's modes; in the Gram form also each token's coordinates X V."""
        if not self.in_gram_form:
            s, v = torch.linalg.eigh(self.xx.to(dtype) / self.n)
            return s.clamp(min=0), v, None
        x = torch.cat(self.rows).to(dtype)
        e, u = torch.linalg.eigh(x @ x.T / self.n)
        keep = e > e.max().clamp(min=0) * 1e-10
        e, u = e[keep], u[:, keep]
        xv = u * (self.n * e).sqrt()
        return e, x.T @ u / (self.n * e).sqrt(), xv

    def nbytes(self) -> int:
        if self.xx is not None:
            return self.xx.numel() * self.xx.element_size()
        return sum(r.numel() * r.element_size() for r in self.rows)


class ModuleSums:
    """Gradient sums of one module: G_A and G_B (sums of g x^T over each sequence half)."""

    def __init__(self, source: InputSums, d_out: int):
        self.source, self.d_out = source, d_out
        source.modules.append(self)
        self.n_a = self.n_b = 0
        self.ga: torch.Tensor | None = None
        self.gb: torch.Tensor | None = None
        self.grad_rows: list[torch.Tensor] = []

    def add(self, x: torch.Tensor, g: torch.Tensor, half_a: torch.Tensor) -> None:
        g = g.detach().to(self.source.dtype)
        self.n_a += int(half_a.sum())
        self.n_b += int((~half_a).sum())
        if self.source.in_gram_form:
            self.grad_rows.append(g)
            return
        x = x.detach().to(self.source.dtype)
        ga, gb = g[half_a].T @ x[half_a], g[~half_a].T @ x[~half_a]
        self.ga = ga if self.ga is None else self.ga.add_(ga)
        self.gb = gb if self.gb is None else self.gb.add_(gb)

    def to_covariance(self, x: torch.Tensor, half_a: torch.Tensor) -> None:
        g = torch.cat(self.grad_rows)
        self.ga, self.gb = g[half_a].T @ x[half_a], g[~half_a].T @ x[~half_a]
        self.grad_rows = []

    def spectrum(self, basis, dtype=torch.float64) -> Spectrum:
        s, v, xv = basis
        if xv is None:
            sum_a, sum_b = self.ga.to(dtype) @ v, self.gb.to(dtype) @ v
        else:
            g, half = torch.cat(self.grad_rows).to(dtype), torch.cat(self.source.halves)
            sum_a, sum_b = g[half].T @ xv[half], g[~half].T @ xv[~half]
        gv = (sum_a + sum_b) / self.source.n
        return Spectrum(s, v, gv, sum_a / max(self.n_a, 1), sum_b / max(self.n_b, 1), self.source.d_in)

    def nbytes(self) -> int:
        if self.ga is not None:
            return (self.ga.numel() + self.gb.numel()) * self.ga.element_size()
        return sum(r.numel() * r.element_size() for r in self.grad_rows)


def ridge(spec: Spectrum, scale: float) -> float:
    """lam = scale * tr(Sigma) / d_in: a ridge relative to the mean eigenvalue, so it is unit-free."""
    return float(scale * spec.s.sum() / spec.d_in)


def gd_factor(s: torch.Tensor, steps: int) -> torch.Tensor:
    """(1 - (1 - s/s_max)^(2T)) / s, the mode weight of T gradient-descent steps of size 1/s_max.

    Written with log1p/expm1 so tiny eigenvalues reach their limit 2T/s_max without cancelling.
    """
    s_max = s.max().clamp(min=torch.finfo(s.dtype).tiny)
    q = (s / s_max).clamp(0, 1)
    captured = -torch.expm1(2 * steps * torch.log1p(-q))
    small = s <= s_max * 1e-12
    return torch.where(small, torch.full_like(s, 2 * steps) / s_max, captured / s.clamp(min=1e-300))


def top_r_energy(b: torch.Tensor, r: int) -> float:
    """Sum of the top-r squared singular values of b: exact for small b, randomised (4 power
    iterations, r+10 vectors, a fixed seed so a card is reproducible) when both sides are large."""
    k = min(b.shape)
    if r >= k:
        return float((b * b).sum())
    if k <= 2 * (r + 10):
        gram = b.T @ b if b.shape[1] <= b.shape[0] else b @ b.T
        return float(torch.linalg.eigvalsh(gram)[-r:].sum())
    with torch.random.fork_rng():
        torch.manual_seed(0)
        _, sv, _ = torch.svd_lowrank(b, q=r + 10, niter=4)
    return float((sv[:r] ** 2).sum())


def cross_fitted(spec: Spectrum, weights: torch.Tensor) -> float:
    """sum over modes of <G_A v, G_B v> * weight, unclipped (its mean is the population value)."""
    return float(((spec.gv_a * spec.gv_b).sum(0) * weights).sum())


def module_signals(spec: Spectrum, ridge_scale: float, steps: int, rank: int) -> ModuleSignals:
    lam = ridge(spec, ridge_scale)
    inverse = 1.0 / (spec.s + lam) if lam > 0 else torch.where(spec.s > 0, 1.0 / spec.s.clamp(min=1e-300),
                                                                 torch.zeros_like(spec.s))
    energy_per_mode = (spec.gv * spec.gv).sum(0)
    weights = gd_factor(spec.s, steps)
    s_min = spec.s.min() if len(spec.s) == spec.d_in else spec.s.new_zeros(())
    total = spec.s.sum()
    return ModuleSignals(
        res2=float((energy_per_mode * inverse).sum()),
        res2_cf=max(0.0, cross_fitted(spec, inverse)),
        res2_rank=top_r_energy(spec.gv * inverse.sqrt(), rank),
        energy=float(total),
        cond=float((spec.s.max() + lam) / (s_min + lam)) if float(s_min + lam) > 0 else float("inf"),
        eff_rank=float(total ** 2 / (spec.s ** 2).sum()) if float(total) > 0 else 0.0,
        gain=float(0.5 * (energy_per_mode * weights).sum()),
        gain_cf=max(0.0, 0.5 * cross_fitted(spec, weights)),
        lam=lam,
    )


def direction(spec: Spectrum, ridge_scale: float) -> torch.Tensor:
    """The best unconstrained adapter's update, D = -G Sigma_lam^-1 (d_out x d_in), not normalised."""
    lam = ridge(spec, ridge_scale)
    return -(spec.gv / (spec.s + lam)) @ spec.v.T


@dataclass
class StreamStats:
    """All sums of one probe pass, keyed by (block, module name)."""

    inputs: list[InputSums] = field(default_factory=list)
    modules: dict[tuple[int, str], ModuleSums] = field(default_factory=dict)

    def nbytes(self) -> int:
        return sum(i.nbytes() for i in self.inputs) + sum(m.nbytes() for m in self.modules.values())
