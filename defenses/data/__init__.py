"""Datasets in the arena's image format, with numpy and Pillow only (the server imports this).

Sources, everywhere a `--data` flag is taken:
- "demo": the embedded dataset, generated deterministically from a seed (10 classes by default);
- a path to a `tiny-imagenet-200/` folder in the standard layout;
- for evaluation samples only, a path to an `.npz` file with `x` (float32 [N,3,64,64] in [0,1])
  and `y` (int64 [N]).

Training splits are uint8 [N,64,64,3] (HWC, as decoded); `to_float_chw` gives the arena's
float32 [N,3,64,64] in [0,1].
"""

from defenses.data.split import DataError, Split, to_float_chw
from defenses.data.sources import default_cache_dir, load_samples, load_split, secret_samples

__all__ = [
    "DataError",
    "Split",
    "default_cache_dir",
    "load_samples",
    "load_split",
    "secret_samples",
    "to_float_chw",
]
