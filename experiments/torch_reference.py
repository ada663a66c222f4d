r"""WAAL as the authors' released PyTorch code runs it, re-created for a side-by-side check.

  python -m experiments.torch_reference --seed=0 --epochs=3 --rounds=3 --out=DIR

The public repository cjshui/WAAL (Shui et al., AISTATS 2020) trains and queries with
`query_strategies/wasserstein_adversarial.py` (class WAAL), `model.py` (networks),
`dataset_WA.py` (the paired labeled / unlabeled training set) and `Test.py` (the
active-learning loop and its numbers). This file does what that code does, written
anew (none of it is copied), on our protocol: the pool / validation / test split of
`waal_jax.data.load` and the initial labeled set of `waal_jax.loop.initial_labeled`, so
that the JAX `reference` preset can be compared with it on the same data.

What is reproduced, and where it is in their code:
  * `LeNet5`, `head`, `critic`        model.py  Net1_fea / Net1_clf / Net1_dis
  * `VGG16BN`                         model.py  VGG_10_fea (cfg 'VGG16'), heads VGG_10_*
  * `epoch_pairs`                     dataset_WA.py Wa_datahandler1 (__len__, __getitem__)
                                      + the shuffling DataLoader of WAAL.train
  * `gradient_penalty`                wasserstein_adversarial.py gradient_penalty
  * `critic_loss`                     WAAL.train, `dis_loss = -1*alpha*W - alpha*gp*2`
  * `train_round`                     WAAL.train (fresh nets, 3 SGD optimizers, 2 steps)
  * `uncertainty`, `query`            WAAL.L2_upper / L1_upper / query / predict_prob /
                                      pred_dis_score
  * `accuracy`                        WAAL.predict + the accuracy line of Test.py
  * `run`                             Test.py's loop, on our splits and round sizes
  * `normalize_images`                Test.py args_pool['FashionMNIST']['transform']

Parameters, for tests that load weights into these networks (state_dict keys):
  LeNet5:   conv1.weight (10, 1, 5, 5), conv1.bias (10,), conv2.weight (20, 10, 5, 5),
            conv2.bias (20,); `conv2_drop` is the Dropout2d (no parameters).
  VGG16BN:  body.<i>.weight (out, in, 3, 3) for the i-th entry of `body` when it is a
            Conv2d (no bias), body.<i+1>.{weight, bias, running_mean, running_var} for
            the BatchNorm2d after it; `VGG16BN.conv_bn_pairs()` lists the 13 pairs in
            order. An optional body.<last-1> Linear (feature_dim) for 96x96 inputs.
  Head / Critic: fc1.weight (hidden, features), fc1.bias, fc2.weight (outputs, hidden),
            fc2.bias; the Critic is the same with outputs = 1, then a sigmoid.
  Layouts: a torch conv weight is (out, in, kh, kw), a flax kernel (kh, kw, in, out);
  a torch Linear weight is (out, in), a flax kernel (in, out). torch flattens the
  extractor's (C, H, W) output channel-major, flax's NHWC output flattens as (H, W, C):
  the rows of a flax fc1 kernel must be permuted accordingly.

Input: uint8 pixels / 255, then (x - 0.1307) / 0.3081 (their Fashion-MNIST constants,
which are MNIST's), no augmentation. Images are held as one tensor and batches are
gathered by index, which gives the numbers their per-example PIL transforms give.

Where this differs from their files (all deliberate; see also the comments in place):
  * Their WAAL class uses the boolean mask `idx_lb`, so the labeled examples are
    cycled in ascending pool-index order, not in the order they were labeled. That is
    what `labeled_order="pool"` (the default) does; "given" keeps the order of the
    labeled index array (initial set, then queried batches as returned).
  * Their feature step adds `alpha * gp * 5` where gp is computed on features taken
    under no_grad with the critic frozen: it has no gradient with respect to any
    parameter, so it is not computed here. Their no_grad recomputation of the
    features does however update batch-norm running statistics (VGG), so that
    forward pass is kept for networks with batch norm.
  * Their VGG convs have a bias; here they do not (see `VGG16BN`). Their trailing
    AvgPool2d(kernel 1, stride 1) is the identity and is left out.
  * Their Test.py, as released, runs CIFAR-10 with 1,000 initial labels, +1,000 a round
    for 5 rounds on the first 50K training images, 80 epochs a round; it also looks up
    'transform_tr' / 'transform_te', which the FashionMNIST entry does not have (it has
    'transform'), so we apply that one transform to training and test.
  * `WAALStep` (for experiments/benchmark.py timings) is NOT the reference step: it is a
    tight version of waal_jax's `paper` step (one feature pass over [labeled;
    unlabeled]), kept with its signature so the benchmark compares like with like.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

# Their numbers (Test.py args_pool['FashionMNIST'], alpha and the query weight).
FASHION_MNIST_MEAN = 0.1307
FASHION_MNIST_STD = 0.3081
BATCH_SIZE = 64          # loader_tr_args
EVAL_BATCH_SIZE = 1000   # loader_te_args
LEARNING_RATE = 0.01     # optimizer_args
MOMENTUM = 0.5           # optimizer_args (FashionMNIST; CIFAR-10 uses 0.3)
ALPHA = 2e-3             # Test.py `alpha`: weight of W in both steps and of the penalty
CRITIC_PENALTY_WEIGHT = 2.0   # `alpha * gp * 2` in the critic's loss
SELECTION = 10.0         # WAAL.selection: weight of the critic in the query score

# (channels, 'M' = 2x2 max pool) of VGG16 (their cfg['VGG16']).
VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                512, 512, 512, "M")


# ----------------------------------------------------------------------------------
# Networks (model.py).


class LeNet5(nn.Module):
  """Fashion-MNIST extractor: (B, 1, 28, 28) -> (B, 320).

  conv1 5x5 (1 -> 10) -> 2x2 max pool -> ReLU; conv2 5x5 (10 -> 20) -> Dropout2d
  (whole channels, p = channel_dropout) -> 2x2 max pool -> ReLU; flattened (C, H, W).
  """

  def __init__(self, channel_dropout: float = 0.5):
    super().__init__()
    self.conv1 = nn.Conv2d(1, 10, 5)
    self.conv2 = nn.Conv2d(10, 20, 5)
    self.conv2_drop = nn.Dropout2d(channel_dropout) if channel_dropout else nn.Identity()

  def forward(self, x):
    x = F.relu(F.max_pool2d(self.conv1(x), 2))                   # (B, 10, 12, 12)
    x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))  # (B, 20, 4, 4)
    return x.flatten(1)


class VGG16BN(nn.Module):
  """SVHN / CIFAR-10 extractor: VGG16, each 3x3 conv followed by BatchNorm2d and ReLU.

  512 features at 32x32 input. The convs have no bias: a per-channel constant added
  before batch norm is removed again by its mean subtraction (in training its gradient
  is exactly zero, so in their code it stays at its initial value; in evaluation it is
  cancelled by the running mean, which tracked it). BatchNorm2d keeps torch's defaults
  (momentum 0.1, eps 1e-5). `feature_dim` (STL-10 in waal_jax, 96x96 -> 3x3x512) adds
  a Linear + ReLU to that size; their code has no such case.
  """

  def __init__(self, in_channels: int = 3, flat: int = 512, feature_dim=None):
    super().__init__()
    layers, c = [], in_channels
    for v in VGG16_LAYERS:
      if v == "M":
        layers.append(nn.MaxPool2d(2, 2))
      else:
        layers += [nn.Conv2d(c, v, 3, padding=1, bias=False), nn.BatchNorm2d(v),
                   nn.ReLU(inplace=True)]
        c = v
    layers.append(nn.Flatten())
    if feature_dim and feature_dim != flat:
      layers += [nn.Linear(flat, feature_dim), nn.ReLU(inplace=True)]
    self.body = nn.Sequential(*layers)

  def conv_bn_pairs(self):
    """The 13 (Conv2d, BatchNorm2d) pairs in order."""
    mods = list(self.body)
    return [(m, mods[i + 1]) for i, m in enumerate(mods) if isinstance(m, nn.Conv2d)]

  def forward(self, x):
    return self.body(x)


class Head(nn.Module):
  """features -> fc1 (hidden) -> ReLU -> dropout(0.5) -> fc2 (outputs). Net1_clf."""

  def __init__(self, features: int, hidden: int, outputs: int, dropout: float = 0.5):
    super().__init__()
    self.fc1 = nn.Linear(features, hidden)
    self.drop = nn.Dropout(dropout)
    self.fc2 = nn.Linear(hidden, outputs)

  def forward(self, z):
    return self.fc2(self.drop(F.relu(self.fc1(z))))


class Critic(Head):
  """The same head with one output, squashed by a sigmoid into (0, 1). Net1_dis.

  Returns shape (B, 1), as theirs."""

  def __init__(self, features: int, hidden: int = 50, dropout: float = 0.5):
    super().__init__(features, hidden, 1, dropout)

  def forward(self, z):
    return torch.sigmoid(super().forward(z))


def head(features: int, hidden: int, outputs: int) -> Head:
  return Head(features, hidden, outputs)


def critic(features: int, hidden: int = 50) -> Critic:
  return Critic(features, hidden)


def make_networks(model: str = "lenet5", hidden: int = 50, num_classes: int = 10,
                  in_channels: int = 3):
  """Fresh (extractor, classifier, critic) with torch's default initialisation."""
  if model == "lenet5":
    extractor, dim = LeNet5(), 320
  elif model == "vgg16":
    extractor, dim = VGG16BN(in_channels), 512
  else:
    raise ValueError(f"unknown model {model!r}: lenet5 or vgg16")
  return extractor, head(dim, hidden, num_classes), critic(dim, hidden)


def normalize_images(images_uint8: np.ndarray, mean=FASHION_MNIST_MEAN,
                     std=FASHION_MNIST_STD) -> torch.Tensor:
  """(N, H, W, C) uint8 -> (N, C, H, W) float32, as ToTensor() then Normalize()."""
  x = torch.from_numpy(np.array(images_uint8, np.uint8)).permute(0, 3, 1, 2)  # a copy
  x = x.to(torch.float32).div(255.0)
  mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
  std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
  return x.sub(mean).div(std).contiguous()


# ----------------------------------------------------------------------------------
# Training (dataset_WA.py and WAAL.train).


def epoch_pairs(num_labeled: int, num_unlabeled: int, batch_size: int = BATCH_SIZE,
                generator=None):
  """One epoch of their paired loader: a list of (labeled_positions, unlabeled_positions).

  Their training set has max(L, U) positions; position p holds labeled example
  p mod L and unlabeled example p mod U. The DataLoader shuffles the positions and cuts
  them into batches of `batch_size`, the last one smaller (drop_last is False). With
  U >= L the unlabeled set is walked once and the labeled one cycled. Positions index
  the labeled / unlabeled index arrays, not the pool.
  """
  n = max(num_labeled, num_unlabeled)
  order = torch.randperm(n, generator=generator)
  return [(p % num_labeled, p % num_unlabeled) for p in torch.split(order, batch_size)]


def gradient_penalty(critic_net, z_unlabeled, z_labeled):
  """mean over [interpolates; z_unlabeled; z_labeled] of (||d critic / d z||_2 - 1)^2.

  Interpolates are z_u + t (z_l - z_u), one t ~ U[0, 1) per row. The critic runs in
  whatever mode it is in (train: its dropout is on), once on all 3B points.
  """
  t = torch.rand(z_unlabeled.shape[0], 1, dtype=z_unlabeled.dtype)
  mixed = z_unlabeled + t * (z_labeled - z_unlabeled)
  points = torch.cat([mixed, z_unlabeled, z_labeled]).requires_grad_(True)
  values = critic_net(points)
  grads, = torch.autograd.grad(values.sum(), points, create_graph=True)
  return ((grads.norm(2, dim=1) - 1.0) ** 2).mean()


def wasserstein_term(critic_net, z_unlabeled, z_labeled, gamma: float):
  """W = mean critic(z_u) - gamma * mean critic(z_l), two separate critic calls."""
  return critic_net(z_unlabeled).mean() - gamma * critic_net(z_labeled).mean()


def critic_loss(w, gp, alpha: float = ALPHA, penalty_weight: float = CRITIC_PENALTY_WEIGHT):
  """Their critic loss, -alpha W - alpha * 2 * gp. The penalty enters with a MINUS
  sign: minimising this rewards a large penalty (reproduced as released)."""
  return -alpha * w - alpha * penalty_weight * gp


def _set_trainable(module: nn.Module, flag: bool):
  for p in module.parameters():
    p.requires_grad_(flag)


def _has_batch_norm(module: nn.Module) -> bool:
  return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())  # pylint: disable=protected-access


def train_round(images: torch.Tensor, labels: torch.Tensor, labeled_idx, unlabeled_idx,
                epochs: int, *, model: str = "lenet5", alpha: float = ALPHA,
                lr: float = LEARNING_RATE, momentum: float = MOMENTUM,
                batch_size: int = BATCH_SIZE, hidden: int = 50, num_classes: int = 10,
                log=None):
  """WAAL.train: fresh networks, `epochs` epochs of the two-step WAAL update.

  `images` (N, C, H, W) float (already normalised) and `labels` (N,) int64 are the
  pool; `labeled_idx` / `unlabeled_idx` are pool indices, in the order the paired
  loader uses them. Returns (extractor, classifier, critic, seconds per epoch).
  """
  labeled_idx = torch.as_tensor(np.asarray(labeled_idx), dtype=torch.long)
  unlabeled_idx = torch.as_tensor(np.asarray(unlabeled_idx), dtype=torch.long)
  num_l, num_u = len(labeled_idx), len(unlabeled_idx)
  if num_l == 0 or num_u == 0:
    raise ValueError("train_round needs labeled and unlabeled examples")
  extractor, classifier, critic_net = make_networks(model, hidden, num_classes,
                                                    images.shape[1])
  opt_fea = torch.optim.SGD(extractor.parameters(), lr=lr, momentum=momentum)
  opt_clf = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=momentum)
  opt_dis = torch.optim.SGD(critic_net.parameters(), lr=lr, momentum=momentum)
  gamma = num_l / num_u                     # `gamma_ratio`, the unbalancing ratio
  bn = _has_batch_norm(extractor)
  epoch_seconds = []
  for epoch in range(epochs):
    start = time.perf_counter()
    extractor.train()
    classifier.train()
    critic_net.train()
    for l_pos, u_pos in epoch_pairs(num_l, num_u, batch_size):
      l_idx, u_idx = labeled_idx[l_pos], unlabeled_idx[u_pos]
      x_l, y_l, x_u = images[l_idx], labels[l_idx], images[u_idx]

      # (1) Extractor + classifier; the critic is frozen.
      _set_trainable(extractor, True)
      _set_trainable(classifier, True)
      _set_trainable(critic_net, False)
      z_l = extractor(x_l)
      z_u = extractor(x_u)
      opt_fea.zero_grad()
      opt_clf.zero_grad()
      ce = F.cross_entropy(classifier(z_l), y_l)
      w = wasserstein_term(critic_net, z_u, z_l, gamma)
      if bn:
        # Their code recomputes the features here under no_grad to feed a penalty term
        # (`alpha * gp * 5`) that has no gradient; only the batch-norm running
        # statistics feel this pass, so it is kept for batch-norm nets only.
        with torch.no_grad():
          extractor(x_l)
          extractor(x_u)
      (ce + alpha * w).backward()
      opt_fea.step()
      opt_clf.step()

      # (2) Critic, on features from the updated extractor (still in train mode).
      _set_trainable(extractor, False)
      _set_trainable(classifier, False)
      _set_trainable(critic_net, True)
      with torch.no_grad():
        z_l = extractor(x_l)
        z_u = extractor(x_u)
      gp = gradient_penalty(critic_net, z_u, z_l)
      w = wasserstein_term(critic_net, z_u, z_l, gamma)
      opt_dis.zero_grad()
      critic_loss(w, gp, alpha).backward()
      opt_dis.step()
    epoch_seconds.append(time.perf_counter() - start)
    if log:
      log(f"  epoch {epoch + 1}/{epochs}: {epoch_seconds[-1]:.1f}s")
  for m in (extractor, classifier, critic_net):
    _set_trainable(m, True)
  return extractor, classifier, critic_net, epoch_seconds


# ----------------------------------------------------------------------------------
# Evaluation and query.


@torch.no_grad()
def _eval_outputs(extractor, classifier, critic_net, images, batch_size=EVAL_BATCH_SIZE):
  """Logits (and critic values if critic_net) in eval mode, in batches."""
  extractor.eval()
  classifier.eval()
  if critic_net is not None:
    critic_net.eval()
  logits, values = [], []
  for x in torch.split(images, batch_size):
    z = extractor(x)
    logits.append(classifier(z))
    if critic_net is not None:
      values.append(critic_net(z).reshape(-1))
  return torch.cat(logits), (torch.cat(values) if values else None)


def accuracy(extractor, classifier, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = EVAL_BATCH_SIZE) -> float:
  """Fraction of argmax predictions equal to the labels (WAAL.predict), eval mode."""
  logits, _ = _eval_outputs(extractor, classifier, None, images, batch_size)
  return float((logits.argmax(1) == labels).to(torch.float64).mean())


def uncertainty(probs: torch.Tensor) -> torch.Tensor:
  """0.5 ||log p||_2 + 0.5 ||log p||_1 per row (L2_upper, L1_upper).

  As theirs, the log of the softmax output (not log_softmax): a probability that
  underflows to 0 gives an infinite score."""
  log_p = torch.log(probs)
  return 0.5 * torch.norm(log_p, dim=1) + 0.5 * torch.sum(-log_p, dim=1)


def query_scores(extractor, classifier, critic_net, images: torch.Tensor,
                 selection: float = SELECTION, batch_size: int = EVAL_BATCH_SIZE):
  """uncertainty(softmax) - selection * critic(z), all networks in eval mode."""
  logits, values = _eval_outputs(extractor, classifier, critic_net, images, batch_size)
  return uncertainty(F.softmax(logits, dim=1)) - selection * values


def query(extractor, classifier, critic_net, images: torch.Tensor, unlabeled_idx,
          count: int, selection: float = SELECTION, batch_size: int = EVAL_BATCH_SIZE):
  """WAAL.query: the `count` unlabeled pool indices of smallest score, smallest first."""
  unlabeled_idx = np.asarray(unlabeled_idx)
  scores = query_scores(extractor, classifier, critic_net,
                        images[torch.as_tensor(unlabeled_idx, dtype=torch.long)],
                        selection, batch_size)
  order = torch.sort(scores, stable=True).indices[:count].numpy()
  return unlabeled_idx[order]


# ----------------------------------------------------------------------------------
# The loop (Test.py) on our protocol.


def _write_json_atomic(path: str, content: dict):
  folder = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(prefix=".results.", suffix=".json", dir=folder)
  try:
    with os.fdopen(fd, "w") as f:
      json.dump(content, f, indent=1)
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def initial_labeled_set(seed: int, pool_count: int, count: int):
  """The JAX driver's round-0 labeled set (pool indices, in its order) and its source."""
  import jax  # pylint: disable=g-import-not-at-top  (only for the shared initial set)
  from waal_jax import loop  # pylint: disable=g-import-not-at-top
  return (np.asarray(loop.initial_labeled(jax.random.key(seed), pool_count, count), np.int64),
          "waal_jax.loop.initial_labeled")


def run(seed: int, epochs: int, rounds: int, initial_labeled: int = 1000,
        query_size: int = 500, out_dir: str = ".", *, pool_size: int = -1,
        val_size: int = -1, labeled_order: str = "pool", splits=None, log=print):
  """Trains, tests and queries for rounds 0..`rounds`; writes out_dir/results.json each
  round. Round r trains on initial_labeled + r * query_size labels, reports its test and
  validation accuracy, then (if r < rounds) queries `query_size` more: its
  queried_indices are the pool indices bought after round r (as in waal_jax.loop).
  `splits` (a waal_jax.data.Splits) replaces loading Fashion-MNIST, for tests.
  """
  if labeled_order not in ("pool", "given"):
    raise ValueError(f"labeled_order must be pool or given, not {labeled_order!r}")
  from waal_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  if splits is None:
    splits = data_lib.load("fashion_mnist", seed=seed, pool_size=pool_size,
                           val_size=val_size, log=log)
  pool_count = len(splits.pool_labels)
  if initial_labeled + rounds * query_size >= pool_count:
    raise ValueError(f"{initial_labeled} + {rounds} x {query_size} labels leave no "
                     f"unlabeled example in a pool of {pool_count}")
  pool_x = normalize_images(splits.pool_images)
  pool_y = torch.as_tensor(np.asarray(splits.pool_labels), dtype=torch.long)
  val_x = normalize_images(splits.val_images)
  val_y = torch.as_tensor(np.asarray(splits.val_labels), dtype=torch.long)
  test_x = normalize_images(splits.test_images)
  test_y = torch.as_tensor(np.asarray(splits.test_labels), dtype=torch.long)
  labeled, labeled_from = initial_labeled_set(seed, pool_count, initial_labeled)
  if labeled_from != "waal_jax.loop.initial_labeled":
    log(f"initial labeled set from {labeled_from}")
  results = {
      "config": {
          "dataset": "fashion_mnist", "model": "lenet5", "seed": seed, "epochs": epochs,
          "rounds": rounds, "initial_labeled": initial_labeled, "query_size": query_size,
          "pool_size": pool_count, "val_size": len(splits.val_labels),
          "test_size": len(splits.test_labels), "batch_size": BATCH_SIZE,
          "eval_batch_size": EVAL_BATCH_SIZE, "lr": LEARNING_RATE, "momentum": MOMENTUM,
          "alpha": ALPHA, "critic_penalty_weight": CRITIC_PENALTY_WEIGHT,
          "selection": SELECTION, "normalize": [FASHION_MNIST_MEAN, FASHION_MNIST_STD],
          "labeled_order": labeled_order,
          "initial_labeled_indices": labeled.tolist(),
          "initial_labeled_from": labeled_from,
          "source": "experiments/torch_reference.py (re-creation of cjshui/WAAL)",
      },
      "device": f"cpu (torch {torch.__version__})",
      "rounds": [],
  }
  os.makedirs(out_dir, exist_ok=True)
  path = os.path.join(out_dir, "results.json")
  for r in range(rounds + 1):
    is_labeled = np.zeros(pool_count, bool)
    is_labeled[labeled] = True
    unlabeled = np.flatnonzero(~is_labeled)            # ascending, as theirs
    order = np.sort(labeled) if labeled_order == "pool" else labeled
    log(f"round {r}/{rounds}: training on {len(labeled)} labels ({len(unlabeled)} "
        "unlabeled)")
    start = time.perf_counter()
    fea, clf, dis, epoch_seconds = train_round(pool_x, pool_y, order, unlabeled, epochs,
                                               log=log)
    train_seconds = time.perf_counter() - start
    test_acc = accuracy(fea, clf, test_x, test_y)
    val_acc = accuracy(fea, clf, val_x, val_y)
    queried = np.zeros(0, np.int64)
    query_seconds = 0.0
    if r < rounds:
      start = time.perf_counter()
      queried = np.asarray(query(fea, clf, dis, pool_x, unlabeled, query_size), np.int64)
      query_seconds = time.perf_counter() - start
    results["rounds"].append({
        "round": r, "num_labeled": int(len(labeled)), "test_accuracy": test_acc,
        "val_accuracy": val_acc, "train_seconds": train_seconds,
        "epoch_seconds": epoch_seconds, "query_seconds": query_seconds,
        "queried_indices": queried.tolist(),
        "queried_class_counts": np.bincount(np.asarray(splits.pool_labels)[queried],
                                            minlength=10).tolist(),
    })
    _write_json_atomic(path, results)
    log(f"round {r}/{rounds}: test accuracy {test_acc:.4f}, validation {val_acc:.4f} "
        f"with {len(labeled)} labels; train {train_seconds:.1f}s, query "
        f"{query_seconds:.2f}s")
    labeled = np.concatenate([labeled, queried])
  return results


# ----------------------------------------------------------------------------------
# A tight training step for experiments/benchmark.py (not the reference algorithm).


class WAALStep:
  """One WAAL step (features + classifier, then critic) on in-memory tensors.

  For timings beside waal_jax's `paper` step: one extractor pass over [labeled;
  unlabeled], cross-entropy + mu' x W for extractor and classifier, then a critic step
  on the detached features with a penalty at random interpolates. Random images.
  """

  def __init__(self, model: str, image_shape, pool_size: int, batch_size: int = 64,
               lr: float = 0.01, momentum: float = 0.5, mu_prime: float = 0.01,
               c0: float = 0.05, penalty: float = 2.0, seed: int = 0, feature_dim=None,
               hidden: int = 50):
    torch.manual_seed(seed)
    h, w, c = image_shape
    if model == "lenet5":
      self.features, dim = LeNet5(channel_dropout=0.0), 320   # as waal_jax's LeNet5
    else:
      flat = 512 * (h // 32) * (w // 32)
      self.features = VGG16BN(c, flat, feature_dim)
      dim = feature_dim or flat
    self.classifier = head(dim, hidden, 10)
    self.critic = critic(dim, hidden)
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


# ----------------------------------------------------------------------------------
# Command line.


class _Parser(argparse.ArgumentParser):
  def error(self, message):
    print(f"torch_reference: error: {message}", file=sys.stderr)
    sys.exit(1)


def main(argv=None) -> int:
  parser = _Parser(prog="python -m experiments.torch_reference",
                   description="The authors' WAAL code re-created in PyTorch, on our "
                   "Fashion-MNIST protocol.")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--epochs", type=int, default=3, help="epochs a round (theirs: 80)")
  parser.add_argument("--rounds", type=int, default=3, help="query rounds after round 0")
  parser.add_argument("--initial_labeled", type=int, default=1000)
  parser.add_argument("--query_size", type=int, default=500)
  parser.add_argument("--pool_size", type=int, default=-1,
                      help="-1: the whole 40K pool, else a random subset (quick runs)")
  parser.add_argument("--labeled_order", choices=("pool", "given"), default="pool",
                      help="order the labeled set is cycled in: pool (theirs) or given")
  parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
  parser.add_argument("--out", required=True, help="folder for results.json")
  args = parser.parse_args(argv)
  for name in ("seed", "rounds"):
    if getattr(args, name) < 0:
      parser.error(f"--{name}={getattr(args, name)}: must be >= 0")
  for name in ("epochs", "initial_labeled", "query_size", "threads"):
    if getattr(args, name) < 1:
      parser.error(f"--{name}={getattr(args, name)}: must be >= 1")
  if args.pool_size != -1 and args.pool_size < 2:
    parser.error(f"--pool_size={args.pool_size}: must be -1 (all) or >= 2")
  if not args.out.strip():
    parser.error("--out must name a folder")
  torch.set_num_threads(args.threads)
  from waal_jax.errors import UserError  # pylint: disable=g-import-not-at-top

  def log(message):
    print(message, file=sys.stderr, flush=True)

  try:
    run(args.seed, args.epochs, args.rounds, args.initial_labeled, args.query_size,
        args.out, pool_size=args.pool_size, labeled_order=args.labeled_order, log=log)
  except (ValueError, OSError, UserError) as e:   # bad input: one line, as the drivers
    message = " ".join(str(e).split())
    print(f"torch_reference: error: {message}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
