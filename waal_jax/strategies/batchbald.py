"""BatchBALD: greedy batches of largest joint mutual information (Kirsch et al., 2019).

BALD scores examples alone, so a batch of it can be one example's near-copies. BatchBALD
picks greedily the example x that maximises I(y_1..y_{n-1}, y_x; w) = H(y_1..y_{n-1},
y_x) - sum_i E_w H(y_i|w); the chosen examples' conditional entropies are a constant, so
the score is H(y_1..y_{n-1}, y_x) - E_w H(y_x|w). The first pick is BALD's.

The weights are T = mc_samples MC-dropout draws, the same T draws for every example
(Kirsch et al.'s consistent MC dropout: the joint lives in how the predictions of one
draw covary; with masks drawn per example, as DBAL draws them, the examples would be
independent and the joint meaningless). The masks come from the query key, so they do
not depend on batching or devices either.

The chosen batch is kept as S = batchbald_configurations rows of label configurations:
row s holds p(config_s | w_t) over t, normalised to sum 1 over t (so that products of
many probabilities never underflow), with log p(config_s) aside. All C^(n-1)
configurations while they fit (exact, weights w_s = p(config_s)); past that, S
configurations drawn afresh after every pick, S / T of them from each draw's
p(y_1..y_n | w_t) (stratified: the rows' mix over the draws is exactly the uniform
prior), weights 1/S, the sampled estimate of Kirsch et al. Either way H(y_batch, y_x) =
sum_s w_s (H(q_s(x)) - log p(config_s)), where q_s(x) = rows_s @ p_x (T) -> (C) is the
distribution of y_x given configuration s. Carrying the configurations over from pick
to pick instead (one label appended to each), as this module first did, makes them
inherit the greedy choice's bias: the estimate of I then climbed to four times the most
a batch can hold (results/batchbald_ceiling).

Cost. A pick's joint entropies take one (S, T) x (T, K C) product and S K C
logarithms for K candidates (S = 1024, T = 10, the 40K Fashion-MNIST pool: 4.1e9
multiply-adds a pick, 2e12 for a query of 500: 147 s on the quiet 2-core EPYC, against
0.5 s for WAAL's query). Two things keep K small without changing the picks that
matter:
- While the configurations are exact (the first picks: C^(n-1) <= S), the whole pool
  competes, but by branch and bound (`best_of_all`): Jensen's inequality within G = 64
  groups of rows bounds every candidate's joint entropy at G / S of the cost, and only
  the candidates whose bound can beat the best score found are evaluated (256 at a
  time). The pick is the one that scoring every candidate gives; on the 40K pool one
  chunk of 256 sufficed for each exact pick.
- The sampled picks compete among the `batchbald_candidates` K = 2,000 of largest BALD.
  There bounds do not help: once the batch saturates (below) every candidate's gain is
  near 0 and within any bound's slack. Measured on the 40K pool (LeNet-5 after 1,000
  labels, 500 picks, the same MC draws and key): the first 18 picks equal the whole
  pool's, 57 of the 500 are in both batches (the sampled picks follow the estimate's
  noise either way), and the greedy takes 9.7 s instead of 147 s.
  `batchbald_candidates=0` computes every candidate at every pick, as the committed
  Fashion-MNIST runs did (their config.json says so), and picks what they picked.
Drawing the configurations afresh costs S n T per pick (5e6 at n = 500, a third of the
time at K = 2,000). Memory: the pool's probabilities, N T C, the bounds G x 16,384 x C
values at a time, one block of candidates at a time (S x block x C values,
_BLOCK_ELEMENTS), and S k T values to draw the configurations (20 MB at S = 1024,
k = 500, T = 10).

Large batches. With T draws, I(y_1..y_n; w) <= H(w) = log T, so a batch can only tell T
draws apart: after a few picks the rest add almost nothing, and the greedy choice among
them follows the estimate's noise. Measured on Fashion-MNIST (LeNet-5 after 1,000
labels, a pool of 4,000, batch 500; results/batchbald_ceiling): T = 10 reached 95% of
log 10 = 2.30 nats at pick 9, T = 30 95% of log 30 = 3.40 at pick 12; the later picks
spread over all ten classes. A query whose batch saturates leaves a line in the round's
`query_notes` (saturation_note)."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from waal_jax import fields
from waal_jax import progress
from waal_jax import sharding
from waal_jax.strategies import bald
from waal_jax.strategies import base
from waal_jax.strategies.uncertainty import entropy

# S x block x C float32 values at once: 4 MiB per array on CPUs (in cache: 4x faster per
# pick than 64 MiB there), 256 MiB on accelerators (fewer, larger products).
_BLOCK_ELEMENTS = {"cpu": 1 << 20}
_ACCELERATOR_BLOCK_ELEMENTS = 1 << 26
_TINY = 1e-30
# The bounds of the exact picks: the S rows in gcd(S, _BOUND_GROUPS) equal groups;
# candidates evaluated _BOUND_CHUNK at a time.
_BOUND_GROUPS = 64
_BOUND_CHUNK = 256
_BOUND_ROWS = 16384   # candidates per block of group_bounds (G x rows x C values)
_HIGHEST = jax.lax.Precision.HIGHEST   # no TF32 on GPUs; the products are memory-bound


def consistent_mc_log_probs(nets, params, batch_stats, x, dropout_key, samples: int):
  """(B, T, C) log p(y|x, w_t): T passes with every dropout layer on (the head's and
  LeNet-5's channel dropout, as DBAL's), pass t's masks drawn from fold_in(dropout_key,
  t) and shared by every example."""
  z, _ = nets.embed(params, batch_stats, x)

  def one_pass(t):
    extractor_key, head_key = jax.random.split(jax.random.fold_in(dropout_key, t))

    def one_example(x_i, z_i):   # the keys are not mapped over: one mask for all examples
      z_i = nets.dropout_features(params, batch_stats, x_i, z_i, extractor_key)
      logits = nets.logits(params, z_i[None], mc=True, dropout_key=head_key)
      return jax.nn.log_softmax(logits[0])
    return jax.vmap(one_example)(x, z)                               # (B, C)

  return jnp.swapaxes(jax.vmap(one_pass)(jnp.arange(samples)), 0, 1)   # (B, T, C)


def initial_state(samples: int, configurations: int):
  """The empty batch: one configuration of probability 1, in rows (S, T), log p (S,),
  weights (S,), exact flag, configurations in use."""
  rows = jnp.zeros((configurations, samples)).at[0].set(1.0 / samples)
  weight = jnp.zeros(configurations).at[0].set(1.0)
  return rows, jnp.zeros(configurations), weight, jnp.array(True), jnp.array(1, jnp.int32)


def candidate_blocks(probs, block: int):
  """(N, T, C) -> (N / block, T, block C), N padded to whole blocks: each block is the
  right operand of one product with the rows."""
  n, samples, classes = probs.shape
  probs = jnp.pad(probs, ((0, -n % block), (0, 0), (0, 0)))
  blocks = probs.reshape(-1, block, samples, classes).transpose(0, 2, 1, 3)
  return blocks.reshape(-1, samples, block * classes)


@functools.partial(jax.jit, static_argnames=("classes",))
def joint_entropies(state, blocks, classes: int):
  """H(y_batch, y_x) for every candidate of the blocks (N padded,), one block at a time."""
  rows, log_prob, weight = state[:3]
  constant = -jnp.sum(weight * log_prob)

  def one_block(block):
    q = jnp.matmul(rows, block, precision=_HIGHEST)                  # (S, block C)
    q = q.reshape(rows.shape[0], -1, classes)
    h = -jnp.sum(q * jnp.log(jnp.maximum(q, _TINY)), axis=-1)        # (S, block)
    return jnp.matmul(weight, h, precision=_HIGHEST)

  return constant + jax.lax.map(one_block, blocks).reshape(-1)


def _extend_exactly(state, probs_x):
  """Every configuration of the state continued by each of x's C labels (the rows fit)."""
  rows, log_prob, _, _, in_use = state
  size, classes = rows.shape[0], probs_x.shape[-1]
  q = jnp.matmul(rows, probs_x, precision=_HIGHEST)                  # (S, C)
  r = jnp.arange(size)
  parent, label = r // classes, r % classes
  valid = r < in_use * classes
  q_chosen = jnp.maximum(q[parent, label], _TINY)
  new_rows = rows[parent] * probs_x[:, label].T / q_chosen[:, None]
  new_log_prob = jnp.where(valid, log_prob[parent] + jnp.log(q_chosen), 0.0)
  return (jnp.where(valid[:, None], new_rows, 0.0), new_log_prob,
          jnp.where(valid, jnp.exp(new_log_prob), 0.0), jnp.array(True),
          (in_use * classes).astype(jnp.int32))


def sample_configurations(chosen_log_probs, count, key, size: int):
  """S = size label configurations of the first `count` chosen examples, drawn afresh
  and stratified over the T draws: rows t * (S // T) .. hold S // T configurations drawn
  from p(y_1..y_n | w_t), so every draw is represented equally and the rows are a
  stratified sample of p(config) (rows past (S // T) T get weight 0)."""
  chosen, samples, _ = chosen_log_probs.shape
  per_draw = size // samples
  r = jnp.arange(size)
  draw = jnp.minimum(r // per_draw, samples - 1)
  # Labels by inverse CDF: one uniform per row and example (Gumbel draws would take C).
  cdf = jnp.cumsum(jnp.exp(chosen_log_probs), axis=-1)[:, draw]       # (k, S, C)
  uniform = jax.random.uniform(key, (chosen, size, 1)) * cdf[..., -1:]
  labels = jnp.minimum(jnp.sum(cdf < uniform, axis=-1), cdf.shape[-1] - 1).T  # (S, k)
  # log p(y_si | w_t) for every row s, chosen example i and draw t: (S, k, T).
  per_label = chosen_log_probs[jnp.arange(chosen)[None, :, None], jnp.arange(samples),
                               labels[:, :, None]]
  in_batch = (jnp.arange(chosen) < count)[None, :, None]
  log_joint = jnp.sum(jnp.where(in_batch, per_label, 0.0), axis=1)  # log p(config_s | w_t)
  valid = r < per_draw * samples
  log_prob = jax.nn.logsumexp(log_joint, axis=1) - jnp.log(samples)
  return (jax.nn.softmax(log_joint, axis=1), jnp.where(valid, log_prob, 0.0),
          jnp.where(valid, 1.0 / (per_draw * samples), 0.0), jnp.array(False),
          jnp.array(size, jnp.int32))


@jax.jit
def extend(state, chosen_log_probs, count, key):
  """The state for the batch of the first `count` rows of chosen_log_probs (K, T, C),
  the last of them just added: every configuration continued by each of its C labels
  while they fit in the S rows (exact); past that, S configurations drawn afresh
  (sample_configurations)."""
  rows, _, _, exact, in_use = state
  size, classes = rows.shape[0], chosen_log_probs.shape[-1]
  return jax.lax.cond(
      exact & (in_use * classes <= size),
      lambda: _extend_exactly(state, jnp.exp(chosen_log_probs[count - 1])),
      lambda: sample_configurations(chosen_log_probs, count, key, size))


def block_size(configurations: int, classes: int, candidates: int) -> int:
  """Candidates per block: as many as _BLOCK_ELEMENTS allows, spread evenly over the
  fewest blocks (little padding)."""
  elements = _BLOCK_ELEMENTS.get(jax.default_backend(), _ACCELERATOR_BLOCK_ELEMENTS)
  largest = max(1, elements // (configurations * classes))
  return -(-candidates // -(-candidates // largest))


def group_bounds(state, probs, groups: int):
  """(N,) upper bounds of H(y_batch, y_x) for every candidate of probs (N, T, C), at
  about groups / S of the cost of the joint entropies themselves. Entropy is concave,
  so within a group g of rows (weight W_g) sum_s w_s H(q_s(x)) <= W_g H(qbar_g(x)),
  where qbar_g(x) = (sum_{s in g} w_s rows_s / W_g) @ p_x (Jensen). Computed
  _BOUND_ROWS candidates at a time: G x _BOUND_ROWS x C values, never G x N x C."""
  rows, log_prob, weight = state[:3]
  size, samples = rows.shape
  n = probs.shape[0]
  constant = -jnp.sum(weight * log_prob)
  group_weight = weight.reshape(groups, size // groups).sum(axis=1)              # (G,)
  group_rows = (weight[:, None] * rows).reshape(groups, size // groups, samples).sum(axis=1)
  group_rows = group_rows / jnp.maximum(group_weight, _TINY)[:, None]          # (G, T)
  block = min(_BOUND_ROWS, n)

  def bounds_from(b, out):
    # The last block ends at row N (it may overlap the one before: same values).
    start = jnp.minimum(b * block, n - block)
    part = jax.lax.dynamic_slice_in_dim(probs, start, block)                   # (B, T, C)
    q = jnp.einsum("gt,btc->gbc", group_rows, part, precision=_HIGHEST)       # (G, B, C)
    h = -jnp.sum(q * jnp.log(jnp.maximum(q, _TINY)), axis=-1)                 # (G, B)
    return jax.lax.dynamic_update_slice_in_dim(
        out, constant + jnp.matmul(group_weight, h, precision=_HIGHEST), start, 0)

  return jax.lax.fori_loop(0, -(-n // block), bounds_from, jnp.zeros(n, probs.dtype))


def chosen_joint_entropies(state, probs, chosen):
  """H(y_batch, y_x) for the candidates `chosen` (B,) of probs (N, T, C)."""
  rows, log_prob, weight = state[:3]
  q = jnp.einsum("st,btc->sbc", rows, probs[chosen], precision=_HIGHEST)      # (S, B, C)
  h = -jnp.sum(q * jnp.log(jnp.maximum(q, _TINY)), axis=-1)                   # (S, B)
  return -jnp.sum(weight * log_prob) + jnp.matmul(weight, h, precision=_HIGHEST)


# Bounds within this of the best score (nats) are still evaluated: float rounding of
# two ways of summing must never prune the true maximum.
_BOUND_SLACK = 1e-4


def best_of_all(state, probs, score_offset, available, *, groups: int, chunk: int):
  """The available candidate of largest H(y_batch, y_x) - score_offset (ties: the lower
  index) and its joint entropy, over all N, without the joint entropy of most of them:
  candidates are evaluated a chunk at a time in decreasing order of `group_bounds`,
  until no bound left can beat the best score (branch and bound; the same pick as
  evaluating every candidate)."""
  n = probs.shape[0]
  bound = jnp.where(available, group_bounds(state, probs, groups) - score_offset, -jnp.inf)

  def evaluate_chunk(carry):
    bound, best, best_index = carry
    top, chosen = jax.lax.top_k(bound, chunk)
    score = chosen_joint_entropies(state, probs, chosen) - score_offset[chosen]
    score = jnp.where(top > -jnp.inf, score, -jnp.inf)
    high = jnp.max(score)
    index = jnp.min(jnp.where(score == high, chosen, n))
    better = (high > best) | ((high == best) & (index < best_index))
    return (bound.at[chosen].set(-jnp.inf), jnp.where(better, high, best),
            jnp.where(better, index, best_index))

  def may_beat(carry):
    bound, best, _ = carry
    return jnp.max(bound) + _BOUND_SLACK >= best

  _, best, index = jax.lax.while_loop(may_beat, evaluate_chunk,
                                      (bound, -jnp.inf, jnp.int32(n)))
  return index, best + score_offset[index]


@functools.partial(jax.jit, static_argnames=("k", "configurations", "candidates"))
def batchbald_greedy(log_probs, selectable, key, *, k: int, configurations: int,
                     candidates: int = 0):
  """k distinct selectable indices of (N, T, C) MC log-probabilities, greedily, and the
  estimate of I(y_1..y_n; w) after each pick n (k,). With `candidates` = 0 every
  candidate's joint entropy is computed at every pick. Else, while the batch's
  configurations are enumerated exactly, the whole pool competes (`best_of_all`, the
  same pick for a fraction of the cost); after that, only the `candidates` of largest
  BALD among the selectable."""
  n, samples, classes = log_probs.shape
  probs = jnp.exp(log_probs)
  conditional = jnp.mean(entropy(log_probs), axis=-1)                # E_w H(y_x|w) (N,)
  if candidates and candidates < n:
    bald_scores = bald.bald_scores(jnp.swapaxes(log_probs, 0, 1))
    shortlist = base.smallest_selectable(-bald_scores, selectable, k=candidates)
    shortlist_probs = probs[shortlist]
  else:
    shortlist, shortlist_probs = jnp.arange(n), probs     # (no copy of the whole pool)
  blocks = candidate_blocks(shortlist_probs,
                            block_size(configurations, classes, len(shortlist)))

  def best_of_shortlist(state, available):
    joint = joint_entropies(state, blocks, classes)[:len(shortlist)]
    score = jnp.where(available[shortlist], joint - conditional[shortlist], -jnp.inf)
    high = jnp.max(score)
    position = jnp.argmin(jnp.where(score == high, shortlist, n))
    return shortlist[position], joint[position]

  def best(state, available):
    if not candidates:
      return best_of_shortlist(state, available)
    return jax.lax.cond(
        state[3],
        lambda: best_of_all(state, probs, conditional, available,
                            groups=math.gcd(configurations, _BOUND_GROUPS),
                            chunk=min(_BOUND_CHUNK, n)),
        lambda: best_of_shortlist(state, available))

  def pick(i, carry):
    state, available, picks, information, chosen_conditional, chosen = carry
    j, joint_j = best(state, available)
    chosen_conditional = chosen_conditional + conditional[j]
    information = information.at[i].set(joint_j - chosen_conditional)
    chosen = chosen.at[i].set(log_probs[j])
    state = extend(state, chosen, i + 1, jax.random.fold_in(key, i))
    jax.debug.callback(progress.device_tick, i + 1)
    return (state, available.at[j].set(False), picks.at[i].set(j), information,
            chosen_conditional, chosen)

  init = (initial_state(samples, configurations), selectable, jnp.zeros(k, jnp.int32),
          jnp.zeros(k), jnp.zeros(()), jnp.zeros((k, samples, classes), log_probs.dtype))
  _, _, picks, information, _, _ = jax.lax.fori_loop(0, k, pick, init)
  return picks, information


SATURATED = 0.95   # of the ceiling log T: the picks after it barely inform about w


def saturation_note(information: np.ndarray, samples: int) -> str:
  """A warning when the batch's estimated I(y_1..y_n; w) (after each pick) reached
  SATURATED of its ceiling before the last pick, else "". With T equally likely weight
  draws, I <= H(w) = log T: once the batch nearly pins down the draw, the later picks
  add almost nothing, and the greedy choice among them follows the estimate's noise
  (see the module's docstring)."""
  ceiling = math.log(samples)
  reached = np.flatnonzero(information >= SATURATED * ceiling)
  if not len(reached) or reached[0] + 1 >= len(information):
    return ""
  return (f"batchbald: the batch's joint information reached {SATURATED:.0%} of its ceiling "
          f"log(query.mc_samples) = {ceiling:.2f} nats at pick {reached[0] + 1} of "
          f"{len(information)}; the later picks inform little about the weights (more "
          "query.mc_samples raise the ceiling; smaller batches stay below it)")


@base.register
class BatchBALD(base.Strategy):
  name = "batchbald"
  inputs = ("mc_log_probs",)   # (over the pool: one set of masks for every example)
  config_fields = {
      "mc_samples": bald.MC_SAMPLES,
      "batchbald_configurations": fields.Option(1024, fields.Int(1), "batchbald: label "
                                                "configurations kept for the joint entropy "
                                                "(all while C^n fit, else this many sampled)"),
      "batchbald_candidates": fields.Option(2000, fields.Int(0), "batchbald: examples "
                                            "considered once the configurations are "
                                            "sampled, those of largest BALD (the exact "
                                            "first picks consider all); 0 = all at every "
                                            "pick (about 15x slower on a 40K pool)")}

  def __init__(self, nets, spec, query, mesh):
    super().__init__(nets, spec, query, mesh)
    if self.options["batchbald_configurations"] < self.options["mc_samples"]:
      fields.fail("query.batchbald_configurations", self.options["batchbald_configurations"],
                  f"must be at least query.mc_samples={self.options['mc_samples']} (the "
                  "sampled configurations are spread evenly over the draws)")

    def log_probs(inputs, x, keys):
      del keys    # one set of masks for the whole pool, not one per example
      variables, dropout_key = inputs
      return consistent_mc_log_probs(nets, variables["params"], variables["batch_stats"], x,
                                     dropout_key, self.options["mc_samples"])

    self.scorer = base.PoolScorer(log_probs, spec, mesh, query.batch_size)

  def mc_log_probs(self, variables, pool, key):
    """(M, T, C) log-probabilities of the T consistent MC-dropout passes."""
    return self.scorer((variables, key), pool)

  def select(self, key, variables, pool, is_labeled, query_size):
    dropout_key, greedy_key = jax.random.split(key)
    return self.choose({"mc_log_probs": self.mc_log_probs(variables, pool, dropout_key)},
                       is_labeled, greedy_key, query_size)

  def choose(self, outputs, is_labeled, key, query_size):
    rows = outputs["mc_log_probs"].shape[0]
    log_probs, selectable, greedy_key = sharding.on_one_device(
        (outputs["mc_log_probs"], base.selectable_rows(self.mesh, rows, is_labeled), key))
    count = self.options["batchbald_candidates"]
    with progress.Progress(query_size, "BatchBALD", "picks") as bar, \
        progress.counted_on_device(bar):
      picks, information = sharding.to_host(batchbald_greedy(
          log_probs, selectable, greedy_key, k=query_size,
          configurations=self.options["batchbald_configurations"],
          candidates=min(max(count, query_size), rows) if count else 0))
    note = saturation_note(information, self.options["mc_samples"])
    if note:
      self.note(note)
    return picks
