"""Fields shared by every experiment; each dataset config starts from these.

The names of these fields are a contract (DESIGN.md section 2): scripts override them
as --config.<group>.<field>=<value>.
"""

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0                       # Root PRNG seed: data split, initial labels, training.
  config.seeds = 1                      # Repetitions (seeds seed, seed+1, ...); with more than
  #                                       one, repetition k runs in WORKDIR/seed_<seed+k>.
  config.distributed = False            # Several hosts: call jax.distributed.initialize()
  #                                       (cluster from SLURM / MPI / TPU, or README).

  config.data = ml_collections.ConfigDict()
  config.data.name = ""                 # tfds name: fashion_mnist, svhn_cropped, cifar10, stl10.
  config.data.data_dir = ""             # tfds data_dir; "" = the tfds default (~/tensorflow_datasets).
  config.data.manual_dir = ""           # Folder with the original files, for offline use.
  config.data.cache_dir = ""            # Cache of loaded arrays; "" = ~/.cache/waal_jax.
  config.data.download = True           # May tfds download the data when nothing local has it.
  config.data.pool_size = -1            # -1 = the whole Table 2 pool; n = a random subset of n.
  config.data.val_size = -1             # -1 = the whole validation split; n = a random subset.

  config.model = ml_collections.ConfigDict()
  config.model.name = "lenet5"          # Feature extractor: lenet5 or vgg16.
  config.model.head_hidden = 50         # Hidden units of the classifier and critic heads (G.2).
  config.model.feature_dim = 0          # vgg16: dense layer to this many features; 0 = none.
  config.model.dropout = 0.5            # Dropout rate in both heads.
  config.model.conv = "banded"          # lenet5 kernels: banded (matrix products, fast on
  #                                       CPU) or xla (lax.conv); same result and parameters.

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 80              # Most epochs per round (Table 3 / section 4).
  config.train.batch_size = 64          # Mini-batch size S, labeled and unlabeled each.
  config.train.learning_rate = 0.01     # Initial SGD rate; x0.1 at 50%, x0.01 at 75% of epochs.
  config.train.momentum = 0.5           # SGD momentum (Table 3).
  config.train.mu = 1e-2                # Weight mu of the adversarial term (Table 3).
  config.train.gradient_penalty = 2.0   # Weight of the critic's gradient penalty.
  config.train.adversarial = "auto"     # auto (wasserstein for waal, none for the baselines),
  #                                       wasserstein, h_divergence (appendix H) or none.
  config.train.variant = "paper"        # paper (equations as published) or reference (authors' code).
  config.train.patience = 10            # Early stopping: epochs without a better val. accuracy.
  config.train.augment = "auto"         # auto (crop+flip iff the authors' code does), none, crop_flip.
  config.train.steps_per_epoch = "auto"  # auto (WAAL: unlabeled pool; baselines: labeled
  #                                       set), labeled, or match_pool (baselines get as
  #                                       many steps as WAAL: a control for training length).
  config.train.eval_batch_size = 250    # Examples per evaluation batch (small: cache-friendly).

  config.al = ml_collections.ConfigDict()
  config.al.initial_labeled = 1000      # Labels at round 0 (Table 2).
  config.al.query_size = 500            # Labels bought per round, B (Table 2).
  config.al.rounds = 10                 # Query rounds; results hold rounds + 1 entries.

  config.query = ml_collections.ConfigDict()
  config.query.strategy = "waal"        # waal, random, least_confidence, margin, entropy,
  #                                       kmedian, coreset, dbal, deepfool.
  config.query.selection = 5.0          # WAAL: weight of the critic in the score (Table 3).
  config.query.mixture = 0.5            # WAAL: weight of Eq. 10 against Eq. 11 (Table 3).
  config.query.batch_size = 256         # Pool examples scored per call and device (on CPU,
  #                                       256 runs ~2x faster than 1024: it stays in cache).
  config.query.mc_samples = 10          # DBAL: stochastic forward passes T (MC dropout).
  config.query.chunk_size = 1024        # Core-set: labeled points per distance block.
  config.query.kmedian_iterations = 10  # K-median: most assignment + median updates.
  config.query.deepfool_iterations = 50 # DeepFool: most steps per example.
  config.query.deepfool_overshoot = 0.02  # DeepFool: overshoot when testing for a flip.
  config.query.deepfool_candidates = 3  # DeepFool: label + the 2 classes of nearest logit;
  #                                       10 = all classes, ~4x slower on CPU.
  return config


def use_reference_numbers(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The variant and numbers of the authors' released code (`--config=NAME:reference`).

  `train.variant=reference` switches the formulas (gamma = L/U, penalty signs, the L2
  uncertainty bound), the constant learning rate, no early stopping and crop + flip on
  SVHN / CIFAR-10; this also sets the numbers that code uses.
  """
  config.train.variant = "reference"
  config.train.mu = 2e-3
  config.query.selection = 10.0
  return config


def finish(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  """Applies the `:variant` argument of a dataset config file."""
  if variant == "reference":
    use_reference_numbers(config)
  elif variant not in ("", "paper"):
    raise ValueError(f"config argument must be paper or reference, not {variant!r}")
  return config
