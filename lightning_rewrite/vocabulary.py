"""Every vocabulary of the project, named once, each name with what it means. Torch-free, so
that the configuration checks values (and ``--help`` explains them) without importing the
engine; the engine's registries are keyed by these names."""

#: The ways of editing (``engine.methods.METHODS`` maps each to its class).
METHODS = {
    "rank_s": "the paper: a rank-S change along the context directions",
    "full_layer": "Eq. 6: all of the layer's weight",
    "all_weights": "Eq. 2-3: every weight, in image space",
    "dissect": "erase: zero the units' columns",
}
#: How the trainable tensors move (``engine.solvers``).
SOLVERS = {
    "auto": "lbfgs where the objective is deterministic and unprojected, else adam",
    "lbfgs": "quasi-Newton with a line search, stopped at convergence",
    "adam": "Adam for trainer.max_steps steps",
    "official": "the 2020 code's schedule: W projected every 10 steps, Adam 0.05 constant, 2001 steps, from W0",
}
#: The default rate: L-BFGS's line search starts from 1; Adam's per method, one layer's weight
#: takes large steps, every weight of the generator at that rate would wreck it (all_weights at
#: 0.05 changed the image 0.44 in L1).
DEFAULT_LR = {"lbfgs": dict.fromkeys(METHODS, 1.0),
              "adam": {"rank_s": 0.05, "full_layer": 0.05, "all_weights": 0.002, "dissect": 0.05}}
#: rank_s: what the optimiser moves.
PARAMETRIZATIONS = {
    "lambda": "optimise Λ",
    "projected": "optimise W, project onto D every project_every steps, as the official code",
    "svd": "optimise W, D from the change's SVD",
}
#: The goal's distance over its region.
LOSSES = {"l1": "official", "mse": "the paper's L2"}
#: The learning-rate schedule over ``max_steps``.
SCHEDULES = {"cosine": "decays to zero", "constant": "official"}
#: The precision of each batch's key products kkᵀ in the statistics (``engine.stats``; summed in float64).
PRODUCTS = {"float32": "one product per sample, fast", "float64": "bitwise as version 0.1"}
#: Request kinds (``engine.goal.GOALS`` maps each to the goal it builds).
KINDS = {"copy": "copy, paste, context", "erase": "zero units, keep the rest", "paired": "swap within pairs"}
#: all_weights' image distance besides L1.
PERCEPTUAL = {"auto": "LPIPS when its backbone is present, else the segmenter's features", "lpips": "spatial LPIPS",
              "segmenter": "the world segmenter's features", "none": "L1 alone"}
#: Run loggers.
LOGGERS = {"wandb": "offline unless you are logged in", "csv": "metrics.csv", "tensorboard": "event files",
           "none": "no logger"}
#: Lightning's accelerators.
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
#: A class is present in a sample when its segmentation covers at least this many pixels.
MIN_PIXELS = 10
#: Held-out samples a picture shows (fit's before/after, test's largest and smallest changes).
SHOWN = 16


def choices(vocabulary: dict[str, str] | tuple[str, ...]) -> str:
    """``a (meaning) | b (meaning)``: a vocabulary as ``--help`` shows it."""
    if isinstance(vocabulary, dict):
        return " | ".join(f"{name} ({meaning})" for name, meaning in vocabulary.items())
    return " | ".join(vocabulary)
