"""A PointNet shape classifier on surface points: scores generated shapes.

Trained on the benchmark's training split; its class accuracy on generated shapes and the Frechet
distance between its penultimate features of generated and real shapes (our "FID", as the paper
reports; point-cloud work computes it on PointNet features the same way) measure whether samples
look like their class. It reads points, so it scores any method (generation, retrieval, scans).
PointNet rather than a 3D CNN: shared MLPs are matrix products, fast to train on CPUs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .classes import CLASSES


@dataclass(frozen=True)
class ClassifierConfig:
    """PointNet hyper-parameters."""

    num_classes: int = len(CLASSES)   # output classes (CLASSES order)
    widths: tuple[int, ...] = (64, 128, 256)   # shared per-point MLP widths
    feature_dim: int = 128            # size of the feature used for the Frechet distance
    num_points: int = 1024            # points drawn from each cloud (train and test)


class ShapeClassifier(nn.Module):
    """Points (B, N, 3) in the canonical frame -> class logits (B, C); ``features`` gives (B, feature_dim)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        layers, cin = [], 3
        for w in config.widths:
            layers += [nn.Linear(cin, w), nn.LayerNorm(w), nn.ReLU(inplace=True)]
            cin = w
        self.point_mlp = nn.Sequential(*layers)
        self.proj = nn.Sequential(nn.Linear(cin, config.feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, points: torch.Tensor) -> torch.Tensor:
        return self.proj(self.point_mlp(points.float()).max(dim=1).values)   # (B, feature_dim)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(points))


@torch.no_grad()
def classify(model: ShapeClassifier, points: np.ndarray | torch.Tensor, batch_size: int = 64
             ) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels (K,) int64 and features (K, D) float64 for point clouds (K, N, 3)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    pts = torch.as_tensor(np.asarray(points, dtype=np.float32))
    n = model.config.num_points
    if pts.shape[1] > n:                                     # a fixed, evenly spread subset
        pts = pts[:, torch.linspace(0, pts.shape[1] - 1, n).long()]
    labels, feats = [], []
    for i in range(0, len(pts), batch_size):
        x = pts[i:i + batch_size].to(device)
        f = model.features(x)
        labels.append(model.head(f).argmax(-1).cpu())
        feats.append(f.double().cpu())
    model.train(was_training)
    return torch.cat(labels).numpy(), torch.cat(feats).numpy()


def augment(points: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    """Random subset of ``num`` points, mirror in x (shapes are left-right symmetric in kind),
    small anisotropic scaling and jitter."""
    B, N, _ = points.shape
    idx = torch.rand(B, N, generator=generator).argsort(1)[:, :num]
    x = points.gather(1, idx[..., None].expand(-1, -1, 3))
    flip = torch.where(torch.rand(B, generator=generator) < 0.5, -1.0, 1.0)
    scale = 1.0 + 0.1 * (torch.rand(B, 3, generator=generator) - 0.5)
    scale[:, 0] *= flip
    return x * scale[:, None] + 0.005 * torch.randn(x.shape, generator=generator)


def train_classifier(train_points: np.ndarray, train_labels: np.ndarray, val_points: np.ndarray, val_labels: np.ndarray,
                     config: ClassifierConfig = ClassifierConfig(), epochs: int = 4, batch_size: int = 32,
                     lr: float = 2e-3, seed: int = 0, device: str | torch.device = "cpu",
                     progress: bool = True) -> tuple[ShapeClassifier, dict]:
    """Train with AdamW + cosine decay; returns the model (eval mode) and a log of its run."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ShapeClassifier(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    occ = torch.from_numpy(np.asarray(train_points, dtype=np.float32))
    y = torch.from_numpy(np.asarray(train_labels)).long()
    steps = epochs * (len(occ) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    log, t0 = {"epochs": []}, time.time()
    bar = tqdm(total=steps, desc="classifier", disable=not progress)
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(occ), generator=g)
        for i in range(len(occ) // batch_size):
            b = perm[i * batch_size:(i + 1) * batch_size]
            x = augment(occ[b], config.num_points, g).to(device)
            loss = F.cross_entropy(model(x), y[b].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        pred, _ = classify(model, val_points)
        acc = float((pred == np.asarray(val_labels)).mean())
        log["epochs"].append({"epoch": epoch + 1, "val_accuracy": acc, "loss": float(loss.item())})
    bar.close()
    log["seconds"] = time.time() - t0
    return model.eval(), log
