"""Fields shared by every experiment, and the two presets `paper` and `reference`.

This file is the single source of every default and of what each field means; the
library checks the values (waal_jax/settings.py) but holds no defaults of its own.
Scripts override fields as --config.<group>.<field>=<value>. The field names of
docs/design.md section 2 are a contract.

Presets: a dataset config file takes an argument, `--config=NAME` (the paper, the
default) or `--config=NAME:reference` (what the authors' released code does). A preset
is nothing but field values (`PRESETS` below); `train.variant` records its name.
"""

import ml_collections


def get_base_config() -> ml_collections.ConfigDict:
  """The paper preset: the equations, Table 3 and appendix G as published."""
  config = ml_collections.ConfigDict()
  config.seed = 0                       # Root PRNG seed: data split, initial labels, training.
  config.seeds = 1                      # Repetitions (seeds seed, seed+1, ...); with more than
  #                                       one, repetition k runs in WORKDIR/seed_<seed+k>.
  config.parallel_seeds = 1             # Seeds run at once; 1 = one after another.
  config.parallel_seeds_mode = "auto"   # How: processes (one per seed, pinned to cores/K
  #                                       cores, XLA's threads to match), vmap (one program,
  #                                       the seed axis vmapped) or auto (CPU: processes;
  #                                       GPU/TPU: vmap).
  config.distributed = False            # Several hosts: call jax.distributed.initialize()
  #                                       (cluster from SLURM / MPI / TPU, or README).

  config.data = ml_collections.ConfigDict()
  config.data.name = ""                 # tfds name: fashion_mnist, svhn_cropped, cifar10, stl10;
  #                                       or image_folder: the user's images at data.path.
  config.data.path = ""                 # image_folder: a folder (train/<class>/*.png|jpg,
  #                                       optional val/, test/, unlabeled/) or an .npz
  #                                       (x_train, y_train, x_test, y_test, ...).
  config.data.image_size = 0            # image_folder: resize every image to this many pixels
  #                                       square; 0 = keep them (they must share one size).
  config.data.val_fraction = 0.1        # image_folder without val/: share of each class of
  #                                       train/ held out for validation.
  config.data.test_fraction = 0.2       # image_folder without test/: share held out for test.
  config.data.data_dir = ""             # tfds data_dir; "" = the tfds default (~/tensorflow_datasets).
  config.data.manual_dir = ""           # Folder with the original files, for offline use.
  config.data.cache_dir = ""            # Cache of loaded arrays; "" = ~/.cache/waal_jax.
  config.data.download = True           # May tfds download the data when nothing local has it.
  config.data.pool_size = -1            # -1 = the whole Table 2 pool; n = a random subset of n.
  config.data.val_size = -1             # -1 = the whole validation split; n = a random subset.
  config.data.mean = ()                 # Per-channel mean of [0, 1] pixels subtracted before
  #                                       the network; () = the dataset's own (training split).
  config.data.std = ()                  # Per-channel divisor after that; () = the dataset's.

  config.model = ml_collections.ConfigDict()
  config.model.name = "lenet5"          # Feature extractor: lenet5, vgg16, or auto (lenet5
  #                                       for 28x28 grayscale images, else vgg16).
  config.model.head_hidden = 50         # Hidden units of the classifier and critic heads (G.2).
  config.model.feature_dim = 0          # vgg16: dense layer to this many features; 0 = none.
  config.model.dropout = 0.5            # Dropout rate in both heads (G.2).
  config.model.extractor_dropout = 0.5  # lenet5: channel dropout after conv2, as the authors'
  #                                       (and DeepAL's) LeNet-5 has; 0 = none.
  config.model.init = "pytorch"         # Initial weights: pytorch (PyTorch's defaults, as the
  #                                       published numbers had: uniform +-1/sqrt(fan_in)) or
  #                                       lecun (LeCun normal, zero biases; 3x the variance).
  config.model.conv = "auto"            # Convolution kernels: auto (cpu: banded; gpu/tpu: xla),
  #                                       banded (lenet5 as matrix products, vgg16's 2x2 maps
  #                                       as patch products: fast on XLA:CPU) or xla
  #                                       (lax.conv everywhere); same result and parameters.
  config.model.matmul_dtype = "float32"  # Operands of the matrix products and convolutions:
  #                                       float32, or bfloat16 (float32 accumulation and
  #                                       everything else in float32; for GPU/TPU).

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 80              # Most epochs per round (Table 3 / section 4).
  config.train.epochs_added_per_round = 0  # Round r trains at most epochs + r x this
  #                                       (0: every round the same; see
  #                                       results/deepal_training_check).
  config.train.batch_size = 64          # Mini-batch size S, labeled and unlabeled each.
  config.train.learning_rate = 0.01     # Initial SGD learning rate (Table 3).
  config.train.lr_schedule = "step"     # step: x0.1 from 50%, x0.01 from 75% of the epochs
  #                                       (Table 3); constant.
  config.train.momentum = 0.5           # SGD momentum (Table 3).
  config.train.mu = 1e-2                # Weight mu of the adversarial term (Table 3).
  config.train.gradient_penalty = 2.0   # Weight of the critic's gradient penalty.
  config.train.adversarial = "auto"     # auto (wasserstein for waal, none for the baselines),
  #                                       wasserstein, h_divergence (appendix H) or none.
  config.train.adversarial_weights = "bias_coefficient"  # bias_coefficient: mu' = mu U/(L+U)
  #                                       on the Wasserstein term and C0 on the labeled critic
  #                                       mean (Eq. 8); size_ratio: mu and L/U.
  config.train.critic_penalty_sign = "subtract"  # subtract: the critic maximises W - penalty
  #                                       (WGAN-GP); add: W + penalty.
  config.train.penalty_points = "interpolates"  # Where the penalty is taken: interpolates
  #                                       (random points between paired labeled and
  #                                       unlabeled features) or interpolates_and_ends
  #                                       (also at both sets of features themselves).
  config.train.critic_features = "shared"  # The critic step's features: shared (those of the
  #                                       feature step) or recomputed (by the updated
  #                                       extractor, with fresh dropout).
  config.train.labeled_sampling = "with_replacement"  # Labeled batch beside each unlabeled
  #                                       one: with_replacement (Alg. 1) or cycle (walk
  #                                       positions p of the epoch take labeled p mod L).
  config.train.domain_batches = "joint"  # joint: labeled and unlabeled images through the
  #                                       extractor as one batch (one set of batch-norm
  #                                       statistics); separate: one call each.
  config.train.model_selection = "best_val"  # The round's network: best_val (the epoch of
  #                                       best validation accuracy) or last (the last epoch).
  config.train.patience = 10            # Stop after this many epochs without a better
  #                                       validation accuracy; 0 = train every epoch.
  config.train.augment = "none"         # none, or crop_flip (random crop after 4-pixel
  #                                       padding + horizontal flip).
  config.train.steps_per_epoch = "auto"  # auto (WAAL: unlabeled pool; baselines: labeled
  #                                       set), labeled, or match_pool (baselines get as
  #                                       many steps as WAAL: a control for training length).
  config.train.eval_batch_size = 250    # Examples per evaluation batch (small: cache-friendly).
  config.train.variant = "paper"        # The preset's name, recorded in results (a label:
  #                                       the fields above say what is done).

  config.al = ml_collections.ConfigDict()
  config.al.initial_labeled = 1000      # Labels at round 0 (Table 2).
  config.al.query_size = 500            # Labels bought per round, B (Table 2).
  config.al.rounds = 10                 # Query rounds; results hold rounds + 1 entries.
  config.al.oracle = "simulated"        # Who labels the queries: simulated (the labels the
  #                                       dataset already has: the paper's experiments) or
  #                                       human (the run writes WORKDIR/to_label/round_<n>.csv,
  #                                       stops, and continues once WORKDIR/labels/round_<n>.csv
  #                                       gives them).

  config.query = ml_collections.ConfigDict()
  config.query.strategy = "waal"        # waal, random, least_confidence, margin, entropy,
  #                                       kmedian, coreset, dbal, deepfool (the paper's), and
  #                                       badge, batchbald, typiclust, probcover.
  config.query.batch_size = 256         # Pool examples scored per call and device (on CPU,
  #                                       256 runs ~2x faster than 1024: it stays in cache).
  # Each strategy's own fields (the types are in its module's `config_fields`):
  config.query.selection = 5.0          # waal: weight of the critic in the score (Table 3).
  config.query.mixture = 0.5            # waal: weight of the first bound against Eq. 11's.
  config.query.uncertainty_bound = "single_worst"  # waal: the first bound, single_worst
  #                                       (max_y -log p, Eq. 10) or l2 (||log p||_2).
  config.query.mc_samples = 10          # dbal, batchbald: stochastic forward passes T
  #                                       (MC dropout).
  config.query.chunk_size = 1024        # coreset: labeled points per distance block.
  config.query.kmedian_iterations = 10  # kmedian: most assignment + median updates.
  config.query.deepfool_iterations = 50  # deepfool: most steps per example.
  config.query.deepfool_overshoot = 0.02  # deepfool: overshoot when testing for a flip.
  config.query.deepfool_classes = 0     # deepfool: classes searched at every step, the label
  #                                       included (those of largest logit); 0 = all.
  config.query.deepfool_boundary = "nearest"  # deepfool: nearest (the method) or last_class
  #                                       (DeepAL's DeepFool before its 2022 fix: always
  #                                       the last class other than the prediction).
  config.query.batchbald_configurations = 1024  # batchbald: label configurations of the
  #                                       chosen batch kept for its joint entropy: all of
  #                                       them while C^n fit, else this many sampled.
  config.query.batchbald_candidates = 0  # batchbald: examples considered, those of largest
  #                                       BALD; 0 = the whole pool.
  config.query.typiclust_max_clusters = 500  # typiclust: most k-means clusters (it uses
  #                                       labeled + query_size up to this many).
  config.query.typiclust_neighbors = 20  # typiclust: K of the K-nearest-neighbour density.
  config.query.kmeans_iterations = 20   # typiclust, probcover: most k-means updates.
  config.query.probcover_radius = 0.0   # probcover: ball radius delta on the normalised
  #                                       embeddings; 0 = the largest with the purity below.
  config.query.probcover_purity = 0.95  # probcover: share of pure balls (alpha) that sets
  #                                       delta when probcover_radius is 0.
  config.query.embeddings_file = ""     # typiclust, probcover: .npy of precomputed pool
  #                                       embeddings (e.g. self-supervised) instead of the
  #                                       trained network's; "" = the network's.
  return config


# What the authors' released PyTorch code (github.com/cjshui/WAAL) does where it differs
# from the paper; docs/design.md section 3 lists each difference with its place there.
REFERENCE = {
    "train.variant": "reference",
    "train.mu": 2e-3,                       # alpha in their Test.py
    "query.selection": 10.0,                # self.selection in their WAAL class
    "train.lr_schedule": "constant",
    "train.adversarial_weights": "size_ratio",
    "train.critic_penalty_sign": "add",
    "train.penalty_points": "interpolates_and_ends",
    "train.critic_features": "recomputed",
    "train.labeled_sampling": "cycle",
    "train.domain_batches": "separate",
    "train.model_selection": "last",
    "train.patience": 0,
    "query.uncertainty_bound": "l2",
}

PRESETS = {"paper": {}, "reference": REFERENCE}


def apply(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  for name, value in values.items():
    group, field = name.split(".")
    config[group][field] = value
  return config


def finish(config: ml_collections.ConfigDict, preset: str,
           dataset_reference: dict = None) -> ml_collections.ConfigDict:
  """Applies the `:preset` argument of a dataset config file; `dataset_reference` holds
  what the authors' code does for that dataset only."""
  if preset not in PRESETS:
    raise ValueError(f"config argument must be one of {', '.join(PRESETS)}, not {preset!r}")
  apply(config, PRESETS[preset])
  if preset == "reference":
    apply(config, dataset_reference or {})
  return config
