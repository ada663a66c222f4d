"""The WAAL training step in tight PyTorch, for side-by-side timings (not a dependency).

Written from the paper (Eq. 7-8, Alg. 1), matching waal_jax's `paper` variant step by
step: one feature pass over [labeled; unlabeled], cross-entropy + mu' x Wasserstein
term for the extractor and classifier, then a critic step on the detached features
with a WGAN-GP penalty at random interpolates. The data sit in memory as tensors
and batches are gathered by index, as in waal_jax; nothing is loaded per example.
"""

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

# (channels, 'M' = 2x2 max pool) of VGG16 with batch norm, as waal_jax.models.
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")


class LeNet5(nn.Module):
  def __init__(self):
    super().__init__()
    self.conv1 = nn.Conv2d(1, 10, 5)
    self.conv2 = nn.Conv2d(10, 20, 5)

  def forward(self, x):                                   # (B, 1, 28, 28) -> (B, 320)
    x = F.relu(F.max_pool2d(self.conv1(x), 2))
    x = F.relu(F.max_pool2d(self.conv2(x), 2))
    return x.flatten(1)


class VGG16BN(nn.Module):
  def __init__(self, in_channels=3, flat=512, feature_dim=None):
    super().__init__()
    layers, c = [], in_channels
    for v in VGG16_LAYERS:
      if v == "M":
        layers.append(nn.MaxPool2d(2))
      else:
        layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v),
                   nn.ReLU(inplace=True)]
        c = v
    layers.append(nn.Flatten())
    if feature_dim and feature_dim != flat:      # STL-10: 3x3x512 -> 4096, as waal_jax
      layers += [nn.Linear(flat, feature_dim), nn.ReLU(inplace=True)]
    self.body = nn.Sequential(*layers)

  def forward(self, x):
    return self.body(x)


def head(features, hidden, outputs):
  return nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(0.5),
                       nn.Linear(hidden, outputs))


class WAALStep:
  """One WAAL step (features + classifier, then critic) on in-memory tensors."""

  def __init__(self, model: str, image_shape, pool_size: int, batch_size: int = 64,
               lr: float = 0.01, momentum: float = 0.5, mu_prime: float = 0.01,
               c0: float = 0.05, penalty: float = 2.0, seed: int = 0, feature_dim=None,
               hidden: int = 50):
    torch.manual_seed(seed)
    h, w, c = image_shape
    if model == "lenet5":
      self.features, dim = LeNet5(), 320
    else:
      flat = 512 * (h // 32) * (w // 32)
      self.features = VGG16BN(c, flat, feature_dim)
      dim = feature_dim or flat
    self.classifier = head(dim, hidden, 10)
    self.critic = nn.Sequential(head(dim, hidden, 1), nn.Sigmoid())
    self.opt_main = torch.optim.SGD(list(self.features.parameters()) +
                                    list(self.classifier.parameters()), lr=lr,
                                    momentum=momentum)
    self.opt_critic = torch.optim.SGD(self.critic.parameters(), lr=lr, momentum=momentum)
    rng = np.random.default_rng(seed)
    self.images = torch.from_numpy(
        rng.integers(0, 256, (pool_size, c, h, w)).astype(np.uint8))
    self.labels = torch.from_numpy(rng.integers(0, 10, pool_size).astype(np.int64))
    self.batch_size, self.mu, self.c0, self.penalty = batch_size, mu_prime, c0, penalty
    self.rng = rng
    for m in (self.features, self.classifier, self.critic):
      m.train()

  def _batch(self):
    s = self.batch_size
    idx = torch.from_numpy(self.rng.integers(0, len(self.labels), 2 * s))
    x = (self.images[idx].float() - 73.0) / 90.0         # on-the-fly normalisation
    return x, self.labels[idx[:s]]

  def step(self):
    s = self.batch_size
    x, y = self._batch()
    z = self.features(x)
    ce = F.cross_entropy(self.classifier(z[:s]), y)
    g = self.critic(z)[:, 0]
    w = g[s:].mean() - self.c0 * g[:s].mean()
    self.opt_main.zero_grad(set_to_none=True)
    (ce + self.mu * w).backward()
    self.opt_main.step()

    z = z.detach()
    g = self.critic(z)[:, 0]
    w = g[s:].mean() - self.c0 * g[:s].mean()
    t = torch.rand(s, 1)
    points = (z[:s] + t * (z[s:] - z[:s])).requires_grad_(True)
    grads, = torch.autograd.grad(self.critic(points).sum(), points, create_graph=True)
    gp = ((grads.norm(dim=1) - 1.0) ** 2).mean()
    self.opt_critic.zero_grad(set_to_none=True)
    (-self.mu * (w - self.penalty * gp)).backward()
    self.opt_critic.step()

