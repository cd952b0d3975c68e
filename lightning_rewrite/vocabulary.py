"""Every vocabulary of the project, named once. Torch-free, so that the configuration checks
values (and ``--help`` lists them) without importing the engine; the engine's registries are
keyed by these names."""

#: The ways of editing (``engine.methods.METHODS`` maps each to its class).
METHODS = ("rank_s", "full_layer", "all_weights", "dissect")
#: Adam's default rate per method: one layer's weight takes large steps; every weight of the
#: generator at that rate would wreck it (all_weights at 0.05 changed the image 0.44 in L1).
DEFAULT_LR = {"rank_s": 0.05, "full_layer": 0.05, "all_weights": 0.002, "dissect": 0.05}
#: rank_s: what the optimiser moves (Λ itself, or W projected onto D, with D from the context or the change's SVD).
PARAMETRIZATIONS = ("lambda", "projected", "svd")
#: The goal's distance over its region.
LOSSES = ("l1", "mse")
#: The learning-rate schedule over ``max_steps``.
SCHEDULES = ("cosine", "constant")
#: Request kinds (``engine.goal.GOALS`` maps each to the goal it builds).
KINDS = ("copy", "erase", "paired")
#: all_weights' image distance besides L1.
PERCEPTUAL = ("auto", "lpips", "segmenter", "none")
#: Run loggers.
LOGGERS = ("wandb", "csv", "tensorboard", "none")
#: Lightning's accelerators.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
#: A class is present in a sample when its segmentation covers at least this many pixels.
MIN_PIXELS = 10
#: Held-out samples a picture shows (fit's before/after, test's largest and smallest changes).
SHOWN = 16
