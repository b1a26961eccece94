"""Metrics equal brute-force references and behave as PointFlow's on known cases."""

import itertools
import math

import numpy as np
import pytest
import torch

from smart3d.metrics import (chamfer_distance, chamfer_matrix, compute_all_metrics, emd_approx, emd_exact,
                             emd_matrix, frechet_distance, mmd_cov, one_nna, to_report_units)


def clouds(n_shapes, n_points, seed=0):
    return np.random.default_rng(seed).normal(size=(n_shapes, n_points, 3)).astype(np.float32)


def surface(kind, n, seed):
    """Points on a sphere, a box or a torus of random size: (n, 3) float32."""
    rng = np.random.default_rng(seed)
    if kind == "sphere":
        v = rng.normal(size=(n, 3))
        p = 0.8 * v / np.linalg.norm(v, axis=1, keepdims=True)
    elif kind == "box":
        s = rng.uniform(0.3, 0.9, 3)
        p = rng.uniform(-1, 1, (n, 3)) * s
        face = rng.integers(0, 3, n)
        p[np.arange(n), face] = rng.choice([-1.0, 1.0], n) * s[face]
    else:
        R, r = rng.uniform(0.5, 0.7), rng.uniform(0.1, 0.3)
        u, v = rng.uniform(0, 2 * np.pi, (2, n))
        p = np.stack([(R + r * np.cos(v)) * np.cos(u), r * np.sin(v), (R + r * np.cos(v)) * np.sin(u)], 1)
    return p.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Chamfer
# --------------------------------------------------------------------------------------------

def chamfer_reference(x, y):
    d = ((x[:, None, :].astype(np.float64) - y[None, :, :]) ** 2).sum(-1)
    return d.min(1).mean() + d.min(0).mean()


@pytest.mark.parametrize("backend", ["matmul", "kdtree"])
def test_chamfer_matrix_equals_double_loop(backend):
    a, b = clouds(5, 64, seed=1), clouds(4, 48, seed=2)
    ref = np.array([[chamfer_reference(x, y) for y in b] for x in a])
    got = chamfer_matrix(a, b, batch_size=3, backend=backend)
    assert got.shape == (5, 4) and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("backend", ["matmul", "kdtree"])
def test_chamfer_symmetric_and_zero_on_identical(backend):
    a, b = clouds(3, 64, seed=3), clouds(4, 64, seed=4)
    np.testing.assert_allclose(chamfer_matrix(a, b, backend=backend).numpy(),
                               chamfer_matrix(b, a, backend=backend).numpy().T, rtol=1e-5, atol=1e-6)
    assert chamfer_matrix(a, a, backend=backend).diagonal().abs().max() < 1e-5


def test_chamfer_distance_matches_matrix_diagonal():
    a, b = clouds(4, 64, seed=5), clouds(4, 64, seed=6)
    np.testing.assert_allclose(chamfer_distance(a, b).numpy(), chamfer_matrix(a, b).diagonal().numpy(), rtol=1e-5)
    assert chamfer_distance(torch.from_numpy(a), torch.from_numpy(a)).abs().max() < 1e-5


# --------------------------------------------------------------------------------------------
# EMD
# --------------------------------------------------------------------------------------------

def emd_brute_force(x, y):
    cost = np.sqrt(((x[:, None, :].astype(np.float64) - y[None, :, :]) ** 2).sum(-1))
    perms = np.array(list(itertools.permutations(range(len(x)))))
    return cost[np.arange(len(x)), perms].sum(1).min() / len(x)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_emd_exact_equals_brute_force(n):
    x, y = clouds(2, n, seed=n)
    assert emd_exact(x, y) == pytest.approx(emd_brute_force(x, y), rel=1e-12)


@pytest.mark.parametrize("n", [2, 5, 7, 33])
def test_emd_approx_within_its_bound_small(n):
    # the auction returns a true bijection (>= exact) within eps_rel of the optimum (<= (1 + eps_rel) exact)
    x, y = clouds(6, n, seed=10 + n)[:3], clouds(6, n, seed=10 + n)[3:]
    got = emd_approx(x, y, eps_rel=0.02).numpy()
    exact = np.array([emd_exact(x[k], y[k]) for k in range(3)])
    assert np.all(got >= exact * (1 - 1e-6)) and np.all(got <= exact * 1.02 + 1e-6), (got, exact)


@pytest.mark.parametrize("num_candidates", [32, 2])   # 2 forces the candidate lists to be rebuilt often
def test_emd_approx_within_its_bound_on_surfaces(num_candidates):
    x = np.stack([surface("sphere", 256, 0), surface("box", 256, 1), surface("torus", 256, 2)])
    y = np.stack([surface("sphere", 256, 3), surface("torus", 256, 4), surface("box", 256, 5)])
    got = emd_approx(x, y, eps_rel=0.02, num_candidates=num_candidates).numpy()
    exact = np.array([emd_exact(x[k], y[k]) for k in range(3)])
    assert np.all(got >= exact * (1 - 1e-6)) and np.all(got <= exact * 1.02), (got, exact)


def test_emd_zero_on_identical_sets():
    x = np.stack([surface("sphere", 256, 0), surface("box", 256, 1)])
    assert emd_approx(x, x).abs().max() < 1e-5
    assert emd_exact(x[0], x[0]) == 0.0
    # a permuted copy is the same set
    perm = np.random.default_rng(0).permutation(256)
    assert emd_approx(x[:1], x[:1, perm]).abs().max() < 1e-5


def test_emd_matrix_methods_agree_and_self_matrix_is_symmetric():
    a, b = clouds(3, 24, seed=20), clouds(2, 24, seed=21)
    exact = emd_matrix(a, b, method="exact")
    auction = emd_matrix(a, b, method="auction", batch_size=4)
    assert exact.shape == (3, 2)
    assert torch.all(auction >= exact * (1 - 1e-6)) and torch.all(auction <= exact * 1.02 + 1e-6)
    self_d = emd_matrix(a, None, method="exact")
    assert torch.equal(self_d, self_d.T) and torch.all(self_d.diagonal() == 0)
    np.testing.assert_allclose(self_d[0, 1].item(), emd_exact(a[0], a[1]), rtol=1e-12)
    with pytest.raises(ValueError, match="auto, auction, exact"):
        emd_matrix(a, b, method="sinkhorn")


# --------------------------------------------------------------------------------------------
# MMD, COV, 1-NNA
# --------------------------------------------------------------------------------------------

def mmd_cov_reference(d):
    S, R = d.shape
    mmd = sum(min(d[i][j] for i in range(S)) for j in range(R)) / R
    nearest = {min(range(R), key=lambda j: (d[i][j], j)) for i in range(S)}
    return mmd, len(nearest) / R


def one_nna_reference(d_ss, d_rr, d_sr):
    S, R = d_sr.shape
    # index k < R: reference k (label 1); k >= R: sample k - R (label 0), PointFlow's order
    def dist(k, l):
        if k < R and l < R:
            return d_rr[k][l]
        if k >= R and l >= R:
            return d_ss[k - R][l - R]
        return d_sr[k - R][l] if k >= R else d_sr[l - R][k]
    correct = 0
    for k in range(S + R):
        nn = min((l for l in range(S + R) if l != k), key=lambda l: (dist(l, k), l))
        correct += (nn < R) == (k < R)
    return correct / (S + R)


def random_distances(S, R, seed):
    rng = np.random.default_rng(seed)
    pts_s, pts_r = rng.normal(size=(S, 4)), rng.normal(size=(R, 4)) + 0.3
    d = lambda p, q: np.linalg.norm(p[:, None] - q[None], axis=-1)
    return d(pts_s, pts_s), d(pts_r, pts_r), d(pts_s, pts_r)


@pytest.mark.parametrize("S,R,seed", [(7, 5, 0), (5, 9, 1), (12, 12, 2)])
def test_mmd_cov_and_one_nna_equal_brute_force(S, R, seed):
    d_ss, d_rr, d_sr = random_distances(S, R, seed)
    mmd, cov = mmd_cov_reference(d_sr)
    got = mmd_cov(torch.from_numpy(d_sr))
    assert got["mmd"] == pytest.approx(mmd, rel=1e-12) and got["cov"] == pytest.approx(cov)
    assert one_nna(d_ss, d_rr, d_sr) == pytest.approx(one_nna_reference(d_ss, d_rr, d_sr))


def test_known_cases():
    d_ss, d_rr, _ = random_distances(6, 6, 3)
    # identical sets: every shape's nearest neighbour (itself excluded) is its twin in the other set,
    # at distance 0, which carries the other label -> accuracy 0; each reference is its twin's
    # nearest reference -> COV 1; MMD 0
    assert one_nna(d_rr, d_rr, d_rr) == 0.0
    assert mmd_cov(d_rr) == {"mmd": 0.0, "cov": 1.0}
    # well separated sets: every nearest neighbour is in the own set -> accuracy 1
    far = np.full((6, 6), 100.0)
    assert one_nna(d_ss, d_rr, far) == 1.0
    # all samples nearest to reference 2 -> COV 1/R; MMD = mean over refs of their nearest sample
    d_sr = np.array([[3.0, 2.0, 1.0], [4.0, 5.0, 0.5]])
    assert mmd_cov(d_sr) == {"mmd": pytest.approx((3.0 + 2.0 + 0.5) / 3), "cov": pytest.approx(1 / 3)}
    # a tie between a reference and a sample goes to the reference (PointFlow takes the first
    # index, references first): ref 0 is at 1 from both ref 1 and sample 0 -> ref 1 (correct);
    # ref 1 -> ref 0 (correct); sample 0 -> ref 0 (wrong): 2 of 3
    d_rr2 = np.array([[0.0, 1.0], [1.0, 0.0]])
    d_sr2 = np.array([[1.0, 5.0]])
    assert one_nna(np.zeros((1, 1)), d_rr2, d_sr2) == pytest.approx(2 / 3)


# --------------------------------------------------------------------------------------------
# Frechet distance
# --------------------------------------------------------------------------------------------

def test_frechet_distance_zero_on_identical_sets():
    f = np.random.default_rng(0).normal(size=(200, 8))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)


def sqrt_psd(s):
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_frechet_distance_closed_form():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 2.0, size=(500, 1)), rng.normal(-0.5, 0.5, size=(400, 1))
    m1, m2, s1, s2 = a.mean(), b.mean(), a.std(ddof=1), b.std(ddof=1)
    assert frechet_distance(a, b) == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-8)
    # several dimensions: |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2), symmetric form
    a, b = rng.normal(size=(300, 3)) @ rng.normal(size=(3, 3)), rng.normal(size=(200, 3)) + 0.5
    S1, S2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    r1 = sqrt_psd(S1)
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(S1 + S2 - 2 * sqrt_psd(r1 @ S2 @ r1))
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


# --------------------------------------------------------------------------------------------
# All at once
# --------------------------------------------------------------------------------------------

def test_compute_all_metrics_and_report_units():
    s, r = clouds(4, 32, seed=30), clouds(5, 32, seed=31)
    m = compute_all_metrics(s, r, emd=True, emd_method="exact")
    d_sr, d_ss, d_rr = chamfer_matrix(s, r), chamfer_matrix(s, s), chamfer_matrix(r, r)
    assert m["MMD-CD"] == pytest.approx(mmd_cov(d_sr)["mmd"])
    assert m["COV-CD"] == pytest.approx(mmd_cov(d_sr)["cov"])
    assert m["1-NNA-CD"] == pytest.approx(one_nna(d_ss, d_rr, d_sr))
    assert set(m) == {"MMD-CD", "COV-CD", "1-NNA-CD", "MMD-EMD", "COV-EMD", "1-NNA-EMD"}
    rep = to_report_units(m)
    assert rep["MMD-CD x1e3"] == pytest.approx(1e3 * m["MMD-CD"])
    assert rep["MMD-EMD x1e2"] == pytest.approx(1e2 * m["MMD-EMD"])
    assert rep["1-NNA-EMD %"] == pytest.approx(100 * m["1-NNA-EMD"])
    assert rep["COV-CD %"] == pytest.approx(100 * m["COV-CD"])
    assert set(compute_all_metrics(s, r, emd=False)) == {"MMD-CD", "COV-CD", "1-NNA-CD"}
    assert all(math.isfinite(v) for v in rep.values())


def test_emd_on_a_point_subset_is_emd_of_those_points():
    s, r = clouds(3, 64, seed=40), clouds(4, 64, seed=41)
    m = compute_all_metrics(s, r, emd=True, emd_method="exact", emd_points=16)
    keep = torch.randperm(64, generator=torch.Generator().manual_seed(0))[:16]
    ss, rr = torch.as_tensor(s)[:, keep], torch.as_tensor(r)[:, keep]
    d_sr = emd_matrix(ss, rr, method="exact")
    assert m["MMD-EMD"] == pytest.approx(mmd_cov(d_sr)["mmd"])
    assert m["1-NNA-EMD"] == pytest.approx(one_nna(emd_matrix(ss, method="exact"), emd_matrix(rr, method="exact"), d_sr))
    assert m["MMD-CD"] == pytest.approx(compute_all_metrics(s, r, emd=False)["MMD-CD"])    # CD keeps every point

