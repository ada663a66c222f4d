"""experiments/torch_reference.py: the PyTorch re-creation of the authors' WAAL code.

Hand-checkable pieces (the paired loader, the query score, the penalty and the critic
loss's sign, the networks' shapes), the command line's refusals, and one short run on
real Fashion-MNIST.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from experiments import torch_reference as tr  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION_MNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


# ----------------------------------------------------------------------------------
# The paired loader (dataset_WA.py + DataLoader(shuffle=True, batch_size=64)).


def test_epoch_pairs_walks_unlabeled_once_and_cycles_labeled():
  torch.manual_seed(0)
  num_l, num_u = 3, 10
  batches = tr.epoch_pairs(num_l, num_u, batch_size=4)
  assert [len(u) for _, u in batches] == [4, 4, 2]          # smaller last batch kept
  l_all = torch.cat([l for l, _ in batches]).tolist()
  u_all = torch.cat([u for _, u in batches]).tolist()
  assert sorted(u_all) == list(range(num_u))                # each unlabeled exactly once
  assert l_all == [p % num_l for p in u_all]                # position p -> labeled p mod L
  counts = np.bincount(l_all, minlength=num_l)
  assert counts.tolist() == [4, 3, 3]                       # 0, 3, 6, 9 -> labeled 0


def test_epoch_pairs_more_labeled_than_unlabeled():
  torch.manual_seed(1)
  batches = tr.epoch_pairs(7, 3, batch_size=64)
  assert len(batches) == 1
  l_pos, u_pos = batches[0]
  assert sorted(l_pos.tolist()) == list(range(7))
  assert u_pos.tolist() == [p % 3 for p in l_pos.tolist()]


def test_epoch_pairs_sizes_of_the_first_round():
  batches = tr.epoch_pairs(1000, 39000)
  assert len(batches) == 610 and len(batches[-1][0]) == 39000 - 609 * 64
  l_all = torch.cat([l for l, _ in batches])
  assert torch.bincount(l_all, minlength=1000).tolist() == [39] * 1000


# ----------------------------------------------------------------------------------
# Query score, penalty, critic loss.


def test_uncertainty_of_a_uniform_prediction():
  probs = torch.full((2, 10), 0.1)
  expected = 0.5 * math.sqrt(10) * math.log(10) + 0.5 * 10 * math.log(10)
  np.testing.assert_allclose(tr.uncertainty(probs).numpy(), [expected] * 2, rtol=1e-6)


def test_uncertainty_is_smallest_for_a_uniform_prediction():
  # sum -log p_k is minimal at the uniform p: the smallest scores are the most
  # uncertain predictions, which the query takes.
  probs = torch.tensor([[0.91] + [0.01] * 9, [0.1] * 10, [0.2] * 5 + [0.0] * 5])
  score = tr.uncertainty(probs)
  assert score[1] < score[0]
  assert math.isinf(float(score[2]))        # log of an exact 0, as theirs: never picked


class _Column(torch.nn.Module):
  """A 'critic' that returns column `k` of its input, shape (B, 1)."""

  def __init__(self, k):
    super().__init__()
    self.k = k

  def forward(self, z):
    return z[:, self.k:self.k + 1]


class _Zero(torch.nn.Module):
  def forward(self, z):
    return torch.zeros(z.shape[0], 1)


def test_query_takes_the_smallest_scores_in_pool_indices():
  # Identity "extractor" and "classifier": the images are the logits themselves.
  logits = torch.zeros(16, 10)             # a pool of 16; pool rows 10..15 unlabeled
  logits[:10, 0] = -5.0                    # labeled rows (most uncertain): not eligible
  logits[10:, 0] = torch.tensor([6.0, 0.0, 3.0, 5.0, 1.0, 4.0])
  unlabeled = np.array([10, 11, 12, 13, 14, 15])
  ident = torch.nn.Identity()
  picked = tr.query(ident, ident, _Zero(), logits, unlabeled, 3)
  assert picked.tolist() == [11, 14, 12]    # least confident first (smallest score)
  # The critic enters with weight -10: a large critic value is picked first.
  logits2 = torch.zeros(3, 10)
  logits2[0, 9] = 3.0         # row 0: a bit more confident, but critic value 3
  scores = tr.query_scores(ident, ident, _Column(9), logits2)
  base = tr.uncertainty(torch.softmax(logits2, 1))
  np.testing.assert_allclose(scores.numpy(), (base - 10 * logits2[:, 9]).numpy(), rtol=1e-6)
  assert tr.query(ident, ident, _Column(9), logits2, np.array([0, 1, 2]), 1).tolist() == [0]
  assert tr.query(ident, ident, _Zero(), logits2, np.array([0, 1, 2]), 1).tolist() != [0]


def test_gradient_penalty_of_a_linear_critic():
  lin = torch.nn.Linear(4, 1)
  with torch.no_grad():
    lin.weight.copy_(torch.tensor([[3.0, 0.0, 4.0, 0.0]]))   # gradient norm 5 everywhere
  seen = []
  lin.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
  z_u, z_l = torch.randn(5, 4), torch.randn(5, 4)
  gp = tr.gradient_penalty(lin, z_u, z_l)
  assert float(gp.detach()) == pytest.approx((5.0 - 1.0) ** 2)
  assert seen == [torch.Size([15, 4])]                       # [interpolates; z_u; z_l]


def test_critic_loss_rewards_the_penalty():
  w = torch.tensor(0.3)
  low, high = tr.critic_loss(w, torch.tensor(0.0)), tr.critic_loss(w, torch.tensor(1.0))
  assert float(high) < float(low)                            # larger penalty, lower loss
  assert float(low - high) == pytest.approx(2 * tr.ALPHA)
  assert float(tr.critic_loss(torch.tensor(1.0), torch.tensor(0.0))) == pytest.approx(-tr.ALPHA)


def test_wasserstein_term_weights_labeled_by_gamma():
  z_u = torch.tensor([[1.0], [3.0]])
  z_l = torch.tensor([[2.0], [6.0]])
  w = tr.wasserstein_term(_Column(0), z_u, z_l, gamma=0.25)
  assert float(w) == pytest.approx(2.0 - 0.25 * 4.0)


# ----------------------------------------------------------------------------------
# Networks.


def test_lenet5_and_heads():
  fea, clf, dis = tr.make_networks("lenet5")
  names = {k: tuple(v.shape) for k, v in fea.state_dict().items()}
  assert names == {"conv1.weight": (10, 1, 5, 5), "conv1.bias": (10,),
                   "conv2.weight": (20, 10, 5, 5), "conv2.bias": (20,)}
  assert {k: tuple(v.shape) for k, v in clf.state_dict().items()} == {
      "fc1.weight": (50, 320), "fc1.bias": (50,), "fc2.weight": (10, 50), "fc2.bias": (10,)}
  assert tuple(dis.fc2.weight.shape) == (1, 50)
  x = torch.randn(3, 1, 28, 28)
  fea.eval(), clf.eval(), dis.eval()
  z = fea(x)
  assert z.shape == (3, 320) and clf(z).shape == (3, 10)
  v = dis(z)
  assert v.shape == (3, 1) and bool(((v > 0) & (v < 1)).all())
  # Dropout2d drops whole channels of conv2's output in training.
  fea.train()
  out = fea.conv2_drop(torch.ones(4, 20, 8, 8))
  per_channel = out.reshape(4, 20, 64)
  assert bool((per_channel.min(-1).values == per_channel.max(-1).values).all())
  assert set(per_channel[..., 0].unique().tolist()) <= {0.0, 2.0}


def test_vgg16bn():
  fea, clf, _ = tr.make_networks("vgg16")
  pairs = fea.conv_bn_pairs()
  assert len(pairs) == 13
  for conv, bn in pairs:
    assert conv.bias is None and conv.kernel_size == (3, 3)
    assert bn.momentum == 0.1 and bn.eps == 1e-5
  fea.eval()
  z = fea(torch.randn(2, 3, 32, 32))
  assert z.shape == (2, 512) and clf(z).shape == (2, 10)


def test_waal_step_for_the_benchmark():
  step = tr.WAALStep("lenet5", (28, 28, 1), 256, batch_size=8)
  before = step.critic.fc1.weight.detach().clone()
  step.step()
  assert not torch.equal(before, step.critic.fc1.weight)


def test_train_round_restores_trainable_parameters():
  torch.manual_seed(0)
  images = torch.randn(40, 1, 28, 28)
  labels = torch.randint(0, 10, (40,))
  fea, clf, dis, seconds = tr.train_round(images, labels, np.arange(8), np.arange(8, 40), 1,
                                          batch_size=16)
  assert len(seconds) == 1
  assert all(p.requires_grad for m in (fea, clf, dis) for p in m.parameters())


# ----------------------------------------------------------------------------------
# Command line and a short real run.


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "experiments.torch_reference", *args],
                        cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args", [["--epochs=-1", "--out=/tmp/x"],
                                  ["--rounds=-2", "--out=/tmp/x"],
                                  ["--seed=0"]])
def test_cli_refuses_bad_input_in_one_line(args):
  proc = _cli(*args)
  assert proc.returncode == 1
  assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


@pytest.mark.skipif(not os.path.exists(FASHION_MNIST), reason="no real Fashion-MNIST")
def test_short_run_on_fashion_mnist(tmp_path):
  from waal_jax import data as data_lib  # pylint: disable=g-import-not-at-top
  splits = data_lib.load("fashion_mnist", seed=0, pool_size=4000, val_size=1000,
                         log=lambda _: None)
  results = tr.run(0, 3, 1, 500, 100, str(tmp_path), splits=splits, log=lambda _: None)
  with open(tmp_path / "results.json") as f:
    assert json.load(f) == json.loads(json.dumps(results))
  r0, r1 = results["rounds"]
  assert (r0["num_labeled"], r1["num_labeled"]) == (500, 600)
  initial = results["config"]["initial_labeled_indices"]
  queried = r0["queried_indices"]
  assert len(set(queried)) == 100 and not set(queried) & set(initial)
  assert r1["queried_indices"] == []
  for r in (r0, r1):
    assert r["test_accuracy"] > 0.4 and r["val_accuracy"] > 0.4   # chance is 0.1
