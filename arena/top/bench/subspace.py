"""`arena bench subspace`: how much a label-only probe can tell, per probe subspace.

A decision-based attack (HopSkipJump, CGBA) estimates the boundary's normal n at a boundary
point from the signs of n random probes drawn in a d-dimensional subspace S. For a flat boundary
the estimate's expected cosine with n is rho * c(n, d), where rho = ||P_S n|| is the share of the
normal inside S and c(n, d) = sqrt(q / (1 + q)), q = 2n / (pi d), the cosine of an n-probe sign
estimate of a direction of S (E|<u, n>| = sqrt(2 / (pi d)) for a random unit u of S). Over a
budget the progress a walk makes grows with rho^2 / d per probe, while 1 / rho bounds from below
the distance it can reach inside S (relative to the minimum, for a flat boundary). This bench
measures rho on the target's own normals (the margin's input gradient, from torch, at each
sample's DDN adversarial, i.e. at the closest boundary point the white-box attack finds) for:
- `bilinear r`: directions drawn at r x r per channel and upsampled bilinearly (`attackers.probes`:
  the attacks use r = 16);
- `pca k`: the top k principal components of the demo's public evaluation images (data an
  attacker has; the bench's samples are among them, which favours PCA: on the private split an
  attacker has only the public images).
The headline (`ratio`): the best subspace's predicted cosine at `--probes` probes over that of the
attacks' own (bilinear 16). It bounds what a better subspace could buy a surrogate-free attack.
"""

from __future__ import annotations

import math
import sys

import numpy as np

ATTACKS_RESOLUTION = 16


def add_arguments(parser) -> None:
    from arena.top.bench.attack import BENCH_MODELS

    parser.add_argument("--checkpoint", default=None, help="target checkpoint (default: the demo preset's, cached)")
    parser.add_argument("--defense", default="natural", choices=[n for n in BENCH_MODELS if "surrogate" not in n],
                        help="without --checkpoint: the demo preset's model (default natural)")
    parser.add_argument("--samples", type=int, default=40, help="samples (correctly classified) [40]")
    parser.add_argument("--resolutions", default="4,8,12,16,24,32", help="bilinear draw resolutions [4,8,12,16,24,32]")
    parser.add_argument("--pca", default="48,192,432,768", help="principal components of the public images [48,192,432,768]")
    parser.add_argument("--probes", type=int, default=100, help="probes per estimate for the predicted cosine [100]")
    parser.add_argument("--ddn-steps", type=int, default=100, help="DDN steps to the boundary point [100]")


def sign_estimate_cosine(probes: int, dims: int) -> float:
    """The expected cosine of an n-probe sign estimate of a direction of a d-dimensional space."""
    q = 2.0 * probes / (math.pi * dims)
    return math.sqrt(q / (1.0 + q))


def bilinear_basis(shape: tuple[int, int, int], resolution: int) -> np.ndarray:
    """Orthonormal float64 [c*h*w, c*r*r]: the span of the bilinear upsamplings of r x r draws."""
    from attackers.probes import upsample_matrix

    c, h, w = shape
    if resolution >= h and resolution >= w:
        return np.eye(c * h * w)
    # one channel's span, orthonormalised once; the channels' blocks are disjoint
    plane, _ = np.linalg.qr(np.kron(upsample_matrix(h, resolution), upsample_matrix(w, resolution)).astype(np.float64))
    return np.kron(np.eye(c), plane)


def principal_components(images: np.ndarray) -> np.ndarray:
    """float64 [min(n, D), D]: the principal components of `images`, largest first (one SVD)."""
    flat = images.reshape(images.shape[0], -1).astype(np.float64)
    return np.linalg.svd(flat - flat.mean(axis=0), full_matrices=False)[2]


def pca_basis(components: np.ndarray, k: int) -> np.ndarray:
    """Orthonormal float64 [D, k]: the top k of `principal_components(images)`."""
    if k > components.shape[0]:
        raise ValueError(f"--pca {k}: the public images give only {components.shape[0]} components")
    return components[:k].T


def shares(normals: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """rho per row: the norm of each unit normal's projection on the orthonormal basis."""
    return np.linalg.norm(normals.astype(np.float64) @ basis, axis=1)


def boundary_normals(model, x: np.ndarray, y: np.ndarray, ddn_steps: int) -> np.ndarray:
    """Unit margin gradients [k, D] of `model` at each sample's DDN adversarial."""
    from attackers.surrogates import Surrogates

    surrogate = Surrogates([model])
    (adversarials, found), = surrogate.minimal_adversarials(x, y, ddn_steps)
    if not found.all():
        raise ValueError(f"DDN found no adversarial for {int((~found).sum())} samples; raise --ddn-steps")
    return surrogate.gradient(adversarials, y)


def run(args) -> dict:
    from arena.top.bench.attack import pick_samples, prepare_models
    from defenses.data import load_samples

    resolutions = [int(r) for r in str(args.resolutions).split(",") if r.strip()]
    components = [int(k) for k in str(args.pca).split(",") if k.strip()]
    if min(resolutions + components, default=1) < 1 or args.probes < 1 or args.samples < 1:
        raise ValueError("--resolutions, --pca, --probes and --samples must be positive")
    target, onnx_bytes, _, where = prepare_models(args.checkpoint, None, False, args.defense)
    target.eval()
    x, y = pick_samples(onnx_bytes, args.samples)
    print(f"[bench subspace] {len(y)} samples; {where}", file=sys.stderr, flush=True)
    normals = boundary_normals(target, x, y, args.ddn_steps)
    public, _, _ = load_samples("demo", None)
    spaces = [(f"bilinear {r}", bilinear_basis(tuple(x.shape[1:]), r)) for r in resolutions]
    public_components = principal_components(public) if components else None
    spaces += [(f"pca {k}", pca_basis(public_components, k)) for k in components]
    rows, figures = [], {"samples": len(y), "probes": args.probes}
    for name, basis in spaces:
        rho = shares(normals, basis)
        d = basis.shape[1]
        cosine = float(np.mean(rho)) * sign_estimate_cosine(args.probes, d)
        rows.append([name, d, float(np.mean(rho)), float(np.mean(1.0 / np.maximum(rho, 1e-12))),
                     1000.0 * float(np.mean(rho**2)) / d, cosine])
        figures[f"rho_{name.replace(' ', '')}"] = float(np.mean(rho))
        figures[f"cos_{name.replace(' ', '')}"] = cosine
    own = next((r for r in rows if r[0] == f"bilinear {ATTACKS_RESOLUTION}"), None)
    best = max(rows, key=lambda r: r[5])
    figures["best_subspace"] = best[0]
    if own is not None:
        figures["ratio"] = best[5] / own[5]
    notes = [f"best predicted cosine at {args.probes} probes: {best[0]} ({best[5]:.3f})"
             + (f", {figures['ratio']:.2f}x the attacks' bilinear {ATTACKS_RESOLUTION}" if own is not None else "")]
    return {
        "title": (f"label-only probes per subspace: the share rho of the target's boundary normal inside it, "
                  f"at {len(y)} samples' DDN adversarials (floor = mean 1/rho: the reachable distance over the "
                  f"minimum for a flat boundary; cos = rho x the cosine of a {args.probes}-probe sign estimate)"),
        "columns": ["subspace", "dims", "rho", "floor", "rho2_per_dim_x1000", f"cos@{args.probes}"],
        "rows": rows,
        "notes": notes,
        "figures": figures,
    }
