"""Point-cloud metrics as the field computes them (PointFlow / PVD / LION), plus a Frechet distance.

Definitions follow stevenygd/PointFlow ``metrics/evaluation_metrics.py``:

- CD(x, y)  = mean_i min_j |x_i - y_j|^2 + mean_j min_i |x_i - y_j|^2   (squared, mean each way, summed)
- EMD(x, y) = min over bijections pi of (1/N) sum_i |x_i - y_pi(i)|     (Euclidean, equal sizes)
- MMD: for every reference shape, the distance to its nearest sample, averaged over references.
- COV: the fraction of reference shapes that are the nearest reference of at least one sample.
- 1-NNA: leave-one-out 1-nearest-neighbour classifier over samples + references, as an accuracy
  (0.5 ideal; 1.0 when the sets are told apart perfectly, 0.0 when every shape's nearest neighbour
  is a twin in the other set).

All of these are returned in raw units; ``to_report_units`` gives the figures as papers print them
(MMD-CD x1e3, MMD-EMD x1e2, COV and 1-NNA in %).

EMD for 2048 points: ``emd_exact`` solves the assignment with scipy (the reference); ``emd_approx``
runs a batched epsilon-scaling auction (Bertsekas) in torch, on the device of its inputs. The auction
returns the cost of a true bijection, so it never under-estimates, and with the final epsilon set to
``eps_rel`` times a lower bound of the EMD it over-estimates by at most ``eps_rel`` (relative).
Measured error and speed against the exact assignment on benchmark shapes, and the other candidates
that were measured and rejected (Fan et al.'s approxmatch, entropic Sinkhorn), are in
``benchmarks/results/metrics.json``, written by ``python benchmarks/bench_metrics.py``. On the
2-core CPU there, the auction (thousands of small Jacobi rounds) was slower than scipy's exact
solver, so ``emd_matrix(method="auto")`` and ``compute_all_metrics`` use the exact solver for CPU
inputs and the auction on other devices, where its rounds are cheap kernels (not measured here).

Chamfer matrices on a CPU use one cKDTree per shape (several times faster there than the matmul
form, which is what runs on a GPU).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from scipy.linalg import sqrtm
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist
from tqdm import tqdm

EmdMethod = Literal["auto", "auction", "exact"]
ChamferBackend = Literal["auto", "matmul", "kdtree"]


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _batched(x, device: torch.device | None = None) -> torch.Tensor:
    """numpy or torch points (B, N, 3) or (N, 3) -> float32 tensor (B, N, 3), on ``device`` if given
    (else where it is; numpy goes to the CPU)."""
    t = torch.as_tensor(x)
    t = (t if device is None else t.to(device)).float()
    if t.dim() == 2:
        t = t.unsqueeze(0)
    if t.dim() != 3 or t.shape[-1] != 3:
        raise ValueError(f"expected points of shape (B, N, 3) or (N, 3), got {tuple(t.shape)}")
    return t


def _sqdist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared distances (B, N, 3), (B, M, 3) -> (B, N, M) float32, matmul-based, clamped at 0."""
    d = torch.baddbmm((x * x).sum(-1, keepdim=True), x, y.transpose(1, 2), alpha=-2.0)
    d += (y * y).sum(-1).unsqueeze(1)
    return d.clamp_min_(0.0)


# --------------------------------------------------------------------------------------------
# Chamfer distance
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def chamfer_distance(x, y) -> torch.Tensor:
    """CD of aligned pairs: x (B, N, 3), y (B, M, 3) -> (B,) float64, on x's device."""
    x = _batched(x)
    y = _batched(y, x.device)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"chamfer_distance pairs x[k] with y[k]; batch sizes differ: {x.shape[0]} vs {y.shape[0]}")
    d = _sqdist(x, y)
    return d.amin(2).double().mean(1) + d.amin(1).double().mean(1)


@torch.no_grad()
def chamfer_matrix(a, b, batch_size: int = 32, progress: bool = False,
                   backend: ChamferBackend = "auto") -> torch.Tensor:
    """CD for all pairs: a (Na, N, 3), b (Nb, M, 3) -> (Na, Nb) float64, on a's device.

    ``backend="matmul"`` works in blocks of about ``batch_size`` shape pairs: one matmul gives the
    squared distances between every point of the a-block and every point of the b-block (a block
    of 32 pairs of 2048-point clouds holds 32 * 2048^2 float32, 512 MB). ``"kdtree"`` builds one
    scipy cKDTree per shape and queries nearest neighbours in float64; on a CPU it is several times
    faster than the matmul (``benchmarks/results/metrics.json``), and with ``b is a`` it computes
    the pairs j >= i only. ``"auto"``: kdtree for CPU inputs, matmul elsewhere.
    """
    if backend not in ("auto", "matmul", "kdtree"):
        raise ValueError(f"unknown chamfer backend {backend!r}; valid backends: auto, matmul, kdtree")
    a = _batched(a)
    b = _batched(b, a.device)
    if backend == "kdtree" or (backend == "auto" and a.device.type == "cpu"):
        return _chamfer_matrix_kdtree(a, b, progress)
    Na, N, _ = a.shape
    Nb, M, _ = b.shape
    cb = max(1, min(Nb, batch_size))                      # b-shapes per block
    ca = max(1, min(Na, batch_size // cb))                # a-shapes per block
    out = torch.empty(Na, Nb, dtype=torch.float64, device=a.device)
    blocks = [(i, j) for i in range(0, Na, ca) for j in range(0, Nb, cb)]
    for i, j in tqdm(blocks, desc="chamfer", disable=not progress):
        x, y = a[i:i + ca], b[j:j + cb]                   # (ca, N, 3), (cb, M, 3)
        X, Y = x.reshape(-1, 3), y.reshape(-1, 3)         # (ca*N, 3), (cb*M, 3)
        d = torch.addmm((X * X).sum(1, keepdim=True), X, Y.T, alpha=-2.0)
        d += (Y * Y).sum(1)
        d = d.clamp_min_(0.0).view(len(x), N, len(y), M)  # (ca, N, cb, M)
        ab = d.amin(3).double().mean(1)                   # (ca, cb): a -> b
        ba = d.amin(1).double().mean(2)                   # (ca, cb): b -> a
        out[i:i + ca, j:j + cb] = ab + ba
    return out


def _chamfer_matrix_kdtree(a: torch.Tensor, b: torch.Tensor, progress: bool) -> torch.Tensor:
    """One cKDTree per shape; for a self-matrix (b is a) only the pairs j >= i (CD is symmetric)."""
    symmetric = b is a
    A = a.detach().cpu().double().numpy()
    B = A if symmetric else b.detach().cpu().double().numpy()
    trees_a = [cKDTree(p) for p in A]
    trees_b = trees_a if symmetric else [cKDTree(p) for p in B]
    out = np.empty((len(A), len(B)))
    for i in tqdm(range(len(A)), desc="chamfer", disable=not progress):
        for j in range(i if symmetric else 0, len(B)):
            ab = trees_b[j].query(A[i], k=1)[0]
            ba = trees_a[i].query(B[j], k=1)[0]
            out[i, j] = np.mean(ab * ab) + np.mean(ba * ba)
            if symmetric:
                out[j, i] = out[i, j]
    return torch.from_numpy(out).to(a.device)


# --------------------------------------------------------------------------------------------
# Earth mover's distance
# --------------------------------------------------------------------------------------------

def emd_exact(x, y) -> float:
    """Exact EMD of two equal-size clouds (N, 3), (N, 3): optimal assignment by scipy, float64."""
    x = np.asarray(torch.as_tensor(x).detach().cpu(), dtype=np.float64)
    y = np.asarray(torch.as_tensor(y).detach().cpu(), dtype=np.float64)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"EMD needs two (N, 3) clouds of equal size, got {x.shape} and {y.shape}")
    cost = cdist(x, y)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def _auction(C: torch.Tensor, eps_final: torch.Tensor, eps_start: torch.Tensor, factor: float,
             num_candidates: int, max_rounds: int) -> tuple[torch.Tensor, int]:
    """Jacobi epsilon-scaling auction on a batch of square costs C (B, N, N) -> assignment (B, N).

    Minimisation form of Bertsekas' auction: bidder i (a point of x) bids for the object j (a point
    of y) minimising C_ij + p_j and raises its price by (second best - best) + eps; all unassigned
    bidders bid at once and each object goes to its highest bid. Prices are kept from one epsilon to
    the next. The final assignment satisfies eps-complementary slackness, so its total cost is at
    most N * eps_final above the optimum.

    Each bidder keeps its ``num_candidates`` cheapest objects (cost + price, at the time the list was
    made) and the next value as a threshold; prices only rise, so everything off the list is still
    at least the threshold, and a list is rebuilt from the full row only when its best value passes
    the threshold. This makes a bid cost K instead of N.
    """
    B, N, _ = C.shape
    dev = C.device
    flat_C = C.view(B * N, N)
    offset = (torch.arange(B, device=dev) * N).view(B, 1, 1)
    price = torch.zeros(B * N, dtype=C.dtype, device=dev)            # object prices, flat b*N + j
    if N <= num_candidates + 1:                                         # small clouds: every object listed
        K = N
        vals, idx = C.sort(dim=2)
        thresh = torch.full((B * N,), math.inf, dtype=C.dtype, device=dev)
    else:
        K = num_candidates
        vals, idx = C.topk(K + 1, dim=2, largest=False, sorted=True)
        thresh = vals[..., K].reshape(B * N).clone()
    cand = (idx[..., :K] + offset).reshape(B * N, K)                    # flat object ids
    cand_cost = vals[..., :K].reshape(B * N, K).contiguous()
    owner = torch.full((B * N,), -1, dtype=torch.long, device=dev)     # object -> bidder (flat)
    assign = torch.full((B * N,), -1, dtype=torch.long, device=dev)    # bidder -> object (flat)
    best = torch.empty(B * N, dtype=C.dtype, device=dev)
    first = torch.empty(B * N, dtype=torch.long, device=dev)
    eps = eps_start.clone()
    rounds = 0
    while True:
        owner.fill_(-1)
        assign.fill_(-1)
        eps_bidder = eps.repeat_interleave(N)
        while True:
            u = (assign < 0).nonzero().squeeze(1)                      # unassigned bidders (flat)
            if u.numel() == 0:
                break
            rounds += 1
            if rounds > max_rounds:
                raise RuntimeError(f"auction did not finish in {max_rounds} rounds ({u.numel()} bidders left); "
                                   f"raise max_rounds or eps_rel")
            if N == 1:
                assign[u] = u
                owner[u] = u
                break
            cj = cand.index_select(0, u)                               # (U, K) flat object ids
            v = cand_cost.index_select(0, u) + price.take(cj)
            t2 = v.topk(2, dim=1, largest=False)
            w1, w2 = t2.values[:, 0], t2.values[:, 1]
            j1 = cj.gather(1, t2.indices[:, :1]).squeeze(1)
            th = thresh.index_select(0, u)
            stale = (w1 > th).nonzero().squeeze(1)
            if stale.numel():                                          # rebuild lists from full rows
                us = u[stale]
                base = (us // N) * N
                rows = flat_C.index_select(0, us)                      # (Us, N)
                row = rows + price.view(B, N).index_select(0, us // N)
                tp = row.topk(K + 1, dim=1, largest=False, sorted=True)
                cand[us] = tp.indices[:, :K] + base.unsqueeze(1)
                cand_cost[us] = rows.gather(1, tp.indices[:, :K])
                thresh[us] = tp.values[:, K]
                w1[stale], w2[stale] = tp.values[:, 0], tp.values[:, 1]
                j1[stale] = tp.indices[:, 0] + base
                th[stale] = tp.values[:, K]
            w2 = torch.minimum(w2, th)                                 # conservative second best
            bid = price.take(j1) + (w2 - w1) + eps_bidder.index_select(0, u)
            best.fill_(-math.inf).scatter_reduce_(0, j1, bid, "amax")
            win = (bid >= best[j1]).nonzero().squeeze(1)               # highest bid per object ...
            order = torch.arange(win.numel(), device=dev)
            first.fill_(win.numel()).scatter_reduce_(0, j1[win], order, "amin")
            win = win[first[j1[win]] == order]                         # ... lowest bidder on ties
            wu, wj = u[win], j1[win]
            prev = owner[wj]
            assign[prev[prev >= 0]] = -1
            owner[wj] = wu
            assign[wu] = wj
            price[wj] = bid[win]
        if bool((eps <= eps_final).all()):
            break
        eps = torch.maximum(eps / factor, eps_final)
    return (assign.view(B, N) - (torch.arange(B, device=dev) * N).unsqueeze(1)), rounds


@torch.no_grad()
def emd_approx(x, y, eps_rel: float = 0.02, factor: float = 8.0, num_candidates: int = 64,
               max_rounds: int = 1_000_000) -> torch.Tensor:
    """EMD of aligned pairs by an epsilon-scaling auction: x (B, N, 3), y (B, N, 3) -> (B,) float64.

    The result is the mean matched distance of a true bijection, so ``EMD <= result``; and since the
    final epsilon is ``eps_rel`` times a lower bound of the EMD (the larger mean nearest-neighbour
    distance of the two directions), ``result <= (1 + eps_rel) * EMD``. Runs on x's device; float32
    costs, float64 sum. Measured error and speed: ``benchmarks/results/metrics.json``.
    """
    x = _batched(x)
    y = _batched(y, x.device)
    if x.shape != y.shape:
        raise ValueError(f"EMD needs clouds of equal size, got {tuple(x.shape)} and {tuple(y.shape)}")
    B, N, _ = x.shape
    C = torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist")  # (B, N, N), exact near 0
    lower = torch.maximum(C.amin(2).mean(1), C.amin(1).mean(1))          # EMD >= mean NN distance
    scale = (C.amax((1, 2)) * 1e-6).clamp_min(1e-12)                     # keeps eps > 0 for identical sets
    eps_final = torch.maximum(eps_rel * lower, scale)
    eps_start = torch.maximum(lower, eps_final)
    assign, _ = _auction(C, eps_final, eps_start, factor, num_candidates, max_rounds)
    return C.gather(2, assign.unsqueeze(2)).squeeze(2).double().mean(1)


@torch.no_grad()
def emd_matrix(a, b=None, batch_size: int = 16, method: EmdMethod = "auto", progress: bool = False,
               **auction_kwargs) -> torch.Tensor:
    """EMD for all pairs: a (Na, N, 3), b (Nb, N, 3) -> (Na, Nb) float64, on a's device.

    ``b=None`` (or ``b is a``) gives the self-distance matrix from the pairs i < j only (EMD is
    symmetric; the diagonal is 0). ``method="auction"`` batches ``batch_size`` pairs per
    ``emd_approx`` call (each pair holds an N x N float32 cost: 16 MB at N = 2048);
    ``method="exact"`` solves each pair with scipy; ``"auto"`` takes the exact solver for CPU inputs
    (on a small CPU it measured faster than the auction, see ``benchmarks/results/metrics.json``)
    and the auction elsewhere.
    """
    if method not in ("auto", "auction", "exact"):
        raise ValueError(f"unknown EMD method {method!r}; valid methods: auto, auction, exact")
    symmetric = b is None or b is a
    a = _batched(a)
    b = a if symmetric else _batched(b, a.device)
    if method == "auto":
        method = "exact" if a.device.type == "cpu" else "auction"
    if symmetric:
        pairs = [(i, j) for i in range(len(a)) for j in range(i + 1, len(a))]
        out = torch.zeros(len(a), len(a), dtype=torch.float64, device=a.device)
    else:
        pairs = [(i, j) for i in range(len(a)) for j in range(len(b))]
        out = torch.empty(len(a), len(b), dtype=torch.float64, device=a.device)
    if method == "exact":
        for i, j in tqdm(pairs, desc="emd exact", disable=not progress):
            out[i, j] = emd_exact(a[i], b[j])
    else:
        for s in tqdm(range(0, len(pairs), batch_size), desc="emd auction", disable=not progress):
            ii, jj = map(list, zip(*pairs[s:s + batch_size]))
            out[ii, jj] = emd_approx(a[ii], b[jj], **auction_kwargs)
    if symmetric:
        out = out + out.T
    return out


# --------------------------------------------------------------------------------------------
# Set metrics: MMD, COV, 1-NNA
# --------------------------------------------------------------------------------------------

def mmd_cov(d_sr) -> dict:
    """MMD and COV from sample-to-reference distances d_sr (S, R) -> {"mmd": float, "cov": float}.

    As PointFlow's ``lgan_mmd_cov``: MMD averages, over references, the distance to the nearest
    sample; COV counts the references that are the nearest reference (argmin, first on ties) of at
    least one sample, divided by R.
    """
    d = torch.as_tensor(d_sr).double()
    if d.dim() != 2 or d.numel() == 0:
        raise ValueError(f"expected a non-empty (S, R) distance matrix, got shape {tuple(d.shape)}")
    mmd = d.amin(0).mean()
    nearest_ref = d.argmin(1)
    cov = nearest_ref.unique().numel() / d.shape[1]
    return {"mmd": float(mmd), "cov": float(cov)}


def one_nna(d_ss, d_rr, d_sr) -> float:
    """1-NNA accuracy in [0, 1] from d_ss (S, S), d_rr (R, R) and d_sr (S, R).

    As PointFlow's ``knn(M_rr, M_rs, M_ss, k=1)``: M = [[d_rr, d_sr^T], [d_sr, d_ss]] (references
    first, label 1; samples label 0), the diagonal set to +inf, each column's nearest neighbour is
    the argmin down the column (first index on ties, so a reference wins a tie with a sample), and
    the accuracy is the fraction of shapes whose neighbour carries their own label.
    """
    d_ss, d_rr, d_sr = (torch.as_tensor(d).double().cpu() for d in (d_ss, d_rr, d_sr))
    S, R = d_sr.shape
    if d_ss.shape != (S, S) or d_rr.shape != (R, R):
        raise ValueError(f"distance matrices disagree: d_ss {tuple(d_ss.shape)}, d_rr {tuple(d_rr.shape)}, "
                         f"d_sr {(S, R)}; expected ({S}, {S}) and ({R}, {R})")
    M = torch.cat([torch.cat([d_rr, d_sr.T], 1), torch.cat([d_sr, d_ss], 1)], 0)
    M.fill_diagonal_(math.inf)
    label = torch.cat([torch.ones(R), torch.zeros(S)])
    pred = label[M.argmin(0)]
    return float((pred == label).double().mean())


# --------------------------------------------------------------------------------------------
# Frechet distance
# --------------------------------------------------------------------------------------------

def frechet_distance(f1, f2) -> float:
    """Frechet distance of Gaussians fitted to features f1 (N1, D), f2 (N2, D), as in FID."""
    f1 = np.asarray(f1, dtype=np.float64)
    f2 = np.asarray(f2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(f"expected features (N1, D) and (N2, D) with N >= 2, got {f1.shape} and {f2.shape}")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1 = np.atleast_2d(np.cov(f1, rowvar=False))
    s2 = np.atleast_2d(np.cov(f2, rowvar=False))
    covmean = sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():                   # singular product: nudge, as pytorch-fid does
        off = np.eye(len(s1)) * 1e-6
        covmean = sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    d = mu1 - mu2
    return float(max(d @ d + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean), 0.0))


# --------------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def compute_all_metrics(sample, ref, emd: bool = True, batch_size: int = 32, emd_method: EmdMethod = "auto",
                        progress: bool = False, emd_points: int | None = None) -> dict:
    """MMD, COV and 1-NNA with CD (and EMD if ``emd``): sample (S, N, 3), ref (R, N, 3) -> dict.

    ``emd_points``: compute EMD on this many points of every cloud (the same fixed random subset
    of indices for all; exact EMD costs O(N^3), so 256 points are ~400x cheaper than 2048).
    Values are raw (fractions, squared or plain distances); ``to_report_units`` scales them.
    """
    s = _batched(sample)
    r = _batched(ref, s.device)
    out = {}
    dists = {"CD": lambda a, b: chamfer_matrix(a, b, batch_size, progress)}
    if emd:
        def emd_dist(a, b):
            same = b is a
            if emd_points is not None and emd_points < a.shape[1]:
                keep = torch.randperm(a.shape[1], generator=torch.Generator().manual_seed(0))[:emd_points]
                a, b = a[:, keep.to(a.device)], b[:, keep.to(b.device)]
            return emd_matrix(a, None if same else b, max(1, batch_size // 2), emd_method, progress)
        dists["EMD"] = emd_dist
    for name, dist in dists.items():
        d_sr, d_ss, d_rr = dist(s, r), dist(s, s), dist(r, r)   # EMD: self matrices from i < j only
        mc = mmd_cov(d_sr)
        out[f"MMD-{name}"] = mc["mmd"]
        out[f"COV-{name}"] = mc["cov"]
        out[f"1-NNA-{name}"] = one_nna(d_ss, d_rr, d_sr)
    return out


_UNITS = {"MMD-CD": ("MMD-CD x1e3", 1e3), "MMD-EMD": ("MMD-EMD x1e2", 1e2), "COV-CD": ("COV-CD %", 100.0),
          "COV-EMD": ("COV-EMD %", 100.0), "1-NNA-CD": ("1-NNA-CD %", 100.0), "1-NNA-EMD": ("1-NNA-EMD %", 100.0)}


def to_report_units(d: dict) -> dict:
    """Raw ``compute_all_metrics`` output -> the units papers print, with the unit in each key."""
    out = {}
    for k, v in d.items():
        name, mult = _UNITS.get(k, (k, 1.0))
        out[name] = float(v) * mult
    return out
