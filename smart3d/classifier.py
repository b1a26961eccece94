"""A small 3D CNN shape classifier on 32^3 occupancy: scores generated shapes.

Trained on the benchmark's training split; its class accuracy on generated shapes and the Frechet
distance between its penultimate features of generated and real shapes (our "FID", as the paper
reports) measure whether samples look like their class.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .shapes import CLASSES


@dataclass(frozen=True)
class ClassifierConfig:
    """3D CNN hyper-parameters."""

    num_classes: int = len(CLASSES)   # output classes (CLASSES order)
    width: int = 16                   # channels of the first stage; doubled at each stage
    feature_dim: int = 128            # size of the feature used for the Frechet distance
    resolution: int = 32              # input grid side


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, padding=1), nn.BatchNorm3d(cout), nn.ReLU(inplace=True),
                         nn.Conv3d(cout, cout, 3, padding=1, stride=2), nn.BatchNorm3d(cout), nn.ReLU(inplace=True))


class ShapeClassifier(nn.Module):
    """Occupancy (B, 32, 32, 32) -> class logits (B, C); ``features`` gives (B, feature_dim)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        w = config.width
        self.stem = nn.Sequential(nn.Conv3d(1, w, 4, stride=2, padding=1), nn.ReLU(inplace=True))  # 16^3
        self.body = nn.Sequential(_stage(w, 2 * w), _stage(2 * w, 4 * w), _stage(4 * w, 8 * w))      # 2^3
        self.proj = nn.Linear(8 * w, config.feature_dim)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, occupancy: torch.Tensor) -> torch.Tensor:
        x = self.body(self.stem(occupancy.float().unsqueeze(1)))   # (B, 8w, 2, 2, 2)
        return F.relu(self.proj(x.mean(dim=(2, 3, 4))))            # (B, feature_dim)

    def forward(self, occupancy: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(occupancy))


@torch.no_grad()
def classify(model: ShapeClassifier, occupancy: np.ndarray | torch.Tensor, batch_size: int = 64
             ) -> tuple[np.ndarray, np.ndarray]:
    """Predicted labels (K,) int64 and features (K, D) float64 for occupancy grids (K, 32, 32, 32)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    occ = torch.as_tensor(np.asarray(occupancy))
    labels, feats = [], []
    for i in range(0, len(occ), batch_size):
        x = occ[i:i + batch_size].to(device)
        f = model.features(x)
        labels.append(model.head(f).argmax(-1).cpu())
        feats.append(f.double().cpu())
    model.train(was_training)
    return torch.cat(labels).numpy(), torch.cat(feats).numpy()


def augment(occ: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror in x (shapes are left-right symmetric in kind) and shift by up to 2 voxels."""
    B = occ.shape[0]
    flip = torch.rand(B, generator=generator) < 0.5
    occ = torch.where(flip[:, None, None, None], occ.flip(1), occ)
    shifts = torch.randint(-2, 3, (3,), generator=generator).tolist()
    return torch.roll(occ, shifts=shifts, dims=(1, 2, 3))


def train_classifier(train_occ: np.ndarray, train_labels: np.ndarray, val_occ: np.ndarray, val_labels: np.ndarray,
                     config: ClassifierConfig = ClassifierConfig(), epochs: int = 4, batch_size: int = 32,
                     lr: float = 2e-3, seed: int = 0, device: str | torch.device = "cpu",
                     progress: bool = True) -> tuple[ShapeClassifier, dict]:
    """Train with AdamW + cosine decay; returns the model (eval mode) and a log of its run."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = ShapeClassifier(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    occ = torch.from_numpy(np.asarray(train_occ))
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
            x = augment(occ[b], g).to(device)
            loss = F.cross_entropy(model(x), y[b].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        pred, _ = classify(model, val_occ)
        acc = float((pred == np.asarray(val_labels)).mean())
        log["epochs"].append({"epoch": epoch + 1, "val_accuracy": acc, "loss": float(loss.item())})
    bar.close()
    log["seconds"] = time.time() - t0
    return model.eval(), log
