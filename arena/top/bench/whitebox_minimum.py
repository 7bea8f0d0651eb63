"""The board's gap to white-box: how far the label-only attacks' distances lie above the smallest
adversarial a white-box adversary finds on the same samples.

`whitebox_minimum(model, onnx, x, y)`: per sample, the minimum over several white-box minimum-norm
methods run on the defense's torch model (torch, imported lazily):
- DDN (Rony et al. 2019; `defenses.whitebox`, 100 steps + bisection);
- DDN targeted at each of the model's `targets` likeliest wrong classes (another boundary may
  be closer than the one untargeted DDN walks to);
- a PGD search: l2 PGD at radius eps, eps bisected per sample below the best distance so far.
Every candidate is checked through the ONNX model (the arena's own inference path, the labels
the board is scored on) and bisected there on the segment from the clean image, so each
distance is of an image the served defense really misclassifies; the same 0 / worst-case rules
as the board apply (`arena.ground.contract.sample_scores`). Without torch gradients (a defense the
organizer has no checkpoint of) there is no white-box minimum.

`board_gap(board, whitebox)`: per defense, board mean d / white-box mean (same samples), the
worst per-sample ratio, and whether the board ranks the defenses in the white-box order; pure
numpy, printable with `format_gap` (the demo and `arena bench attack` both use it); each pair the
board orders against white-box says whether white-box separates it (Holm over the board's pairs).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

METHODS = ("ddn", "ddn-targeted", "pgd-search")


def whitebox_minimum(model, onnx_model, x: np.ndarray, y: np.ndarray, *, ddn_steps: int = 100, targets: int = 3,
                     pgd_steps: int = 20, pgd_rounds: int = 8, bisect_steps: int = 12,
                     threads: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(per-sample scored minimum float64 [n], {method: its own scored distances}) for the
    torch `model` whose ONNX export is `onnx_model` (bytes or path), on float32 images x in
    [0, 1] and labels y (see the module docstring)."""
    import torch

    from arena.ground.contract import sample_scores, worst_case_distances
    from attackers.local import LocalOracle
    from attackers.surrogates import Surrogates
    from defenses.whitebox import minimal_l2_adversarials

    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    oracle = LocalOracle(onnx_model, budget=None, threads=threads)
    clean_wrong = oracle.logits(x).argmax(1) != y
    worst = worst_case_distances(x)
    model.eval()
    per: dict[str, np.ndarray] = {}

    def verified(candidates: np.ndarray) -> np.ndarray:
        d = _verify(oracle, x, y, candidates, bisect_steps)
        d[clean_wrong] = 0.0
        return d

    _, adv = minimal_l2_adversarials(model, x, y, steps=ddn_steps)
    per["ddn"] = verified(adv)
    if targets:
        with torch.no_grad():
            logits = model(torch.from_numpy(x)).numpy()
        logits[np.arange(len(y)), y] = -np.inf
        ranked = np.argsort(-logits, axis=1, kind="stable")[:, :targets]
        best = np.full(len(y), np.inf)
        for j in range(ranked.shape[1]):
            adv, _ = Surrogates([model]).targeted_adversarials(model, x, ranked[:, j], ddn_steps)
            best = np.minimum(best, verified(adv))
        per["ddn-targeted"] = best
    if pgd_rounds:
        upper = np.min(np.stack(list(per.values())), axis=0)
        per["pgd-search"] = verified(_pgd_search(model, x, y, upper, pgd_steps, pgd_rounds))
    scored = {m: sample_scores(d, np.ones(len(y), bool), worst) for m, d in per.items()}
    best = np.min(np.stack(list(scored.values())), axis=0)
    return best, scored


def _verify(oracle, x: np.ndarray, y: np.ndarray, candidates: np.ndarray, steps: int) -> np.ndarray:
    """Per sample, the l2 distance of the closest image on the segment x -> candidate that the
    ONNX model misclassifies (bisection, `steps` halvings; +inf where the candidate itself is
    classified correctly or not finite)."""
    n = len(y)
    direction = (candidates.astype(np.float32) - x).reshape(n, -1)
    ok = np.isfinite(direction).all(axis=1)
    direction[~ok] = 0.0
    flat = x.reshape(n, -1)

    def point(t: np.ndarray) -> np.ndarray:
        return np.clip(flat + t[:, None].astype(np.float32) * direction, 0.0, 1.0).astype(np.float32).reshape(x.shape)

    hi = np.ones(n)
    ok &= oracle.logits(point(hi)).argmax(1) != y
    lo = np.zeros(n)
    for _ in range(steps):
        mid = (lo + hi) / 2.0
        adv = oracle.logits(point(mid)).argmax(1) != y
        hi = np.where(adv, mid, hi)
        lo = np.where(adv, lo, mid)
    d = np.linalg.norm((point(hi) - x).reshape(n, -1).astype(np.float64), axis=1)
    return np.where(ok, d, np.inf)


def _pgd_search(model, x: np.ndarray, y: np.ndarray, upper: np.ndarray, steps: int, rounds: int) -> np.ndarray:
    """l2 PGD (cross-entropy ascent, step 2.5 eps / steps) at a per-sample radius eps: first eps =
    upper (the best distance known; the worst case where none), then bisected below the smallest
    radius broken so far: returns
    the adversarial of the smallest radius that PGD broke (the clean image where none)."""
    import torch
    import torch.nn.functional as F

    from arena.ground.contract import worst_case_distances

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    n = len(y)
    hi = np.where(np.isfinite(upper) & (upper > 0), upper, worst_case_distances(x))
    lo = np.zeros(n)
    best = x.copy()
    for r in range(rounds):
        mid = hi if r == 0 else (lo + hi) / 2.0   # first at the best distance known: can PGD break it at all
        eps = torch.from_numpy(mid.astype(np.float32))
        delta = torch.zeros_like(xt)
        hit = torch.zeros(n, dtype=torch.bool)
        found = xt.clone()
        for _ in range(steps):
            delta.requires_grad_(True)
            logits = model(xt + delta)
            grad, = torch.autograd.grad(F.cross_entropy(logits, yt, reduction="sum"), delta)
            with torch.no_grad():
                adv = (logits.argmax(1) != yt) & ~hit
                found[adv] = (xt + delta)[adv]
                hit |= adv
                g = grad / grad.flatten(1).norm(dim=1).clamp_min(1e-12)[:, None, None, None]
                delta = delta + (2.5 * eps / steps)[:, None, None, None] * g
                norm = delta.flatten(1).norm(dim=1)
                delta = delta * torch.clamp(eps / norm.clamp_min(1e-12), max=1.0)[:, None, None, None]
                delta = (xt + delta).clamp(0, 1) - xt
        with torch.no_grad():
            adv = (model(xt + delta).argmax(1) != yt) & ~hit
            found[adv] = (xt + delta)[adv]
            hit |= adv
        h = hit.numpy()
        best[h] = found.numpy()[h]
        hi = np.where(h, mid, hi)
        lo = np.where(h, lo, mid)
    return best


def board_gap(board: Mapping[str, np.ndarray], whitebox: Mapping[str, np.ndarray]) -> dict:
    """Per defense (those in both), on the same samples in the same order: {"defenses": {name:
    {"board_mean", "whitebox_mean", "ratio", "worst_sample_ratio"}}, "board_order",
    "whitebox_order" (most robust first), "same_order"}. Scored distances in (0 / worst case
    already applied); a sample with white-box d = 0 is left out of the per-sample ratio."""
    rows = {}
    for name in board:
        if name not in whitebox:
            continue
        b, w = np.asarray(board[name], dtype=np.float64), np.asarray(whitebox[name], dtype=np.float64)
        if b.shape != w.shape:
            raise ValueError(f"{name}: {b.size} board distances but {w.size} white-box ones (the same samples are needed)")
        positive = w > 0
        rows[name] = {"board_mean": float(b.mean()), "whitebox_mean": float(w.mean()),
                      "ratio": float(b.mean() / w.mean()) if w.mean() > 0 else float("nan"),
                      "worst_sample_ratio": float((b[positive] / w[positive]).max()) if positive.any() else float("nan")}
    board_order = sorted(rows, key=lambda n: -rows[n]["board_mean"])
    white_order = sorted(rows, key=lambda n: -rows[n]["whitebox_mean"])
    return {"defenses": rows, "board_order": board_order, "whitebox_order": white_order,
            "same_order": board_order == white_order,
            "inversions": _inversions(board_order, white_order,
                                      {n: np.asarray(whitebox[n], dtype=np.float64) for n in rows})}


def _inversions(board_order: list[str], white_order: list[str], white: dict) -> list[dict]:
    """The pairs the board orders against white-box, and whether white-box separates them: a
    paired sign-flip test of the white-box distances over the samples, Holm over every pair of
    the board (the board's own verdict rule, scoreboard.uncertainty), at 5% family-wise."""
    from scoreboard.uncertainty import holm, holm_adjusted, sign_flip_p_values

    names = list(board_order)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    if not pairs:
        return []
    p = sign_flip_p_values(np.stack([white[a] - white[b] for a, b in pairs]))
    separated, adjusted = holm(p), holm_adjusted(p)
    out = []
    for (a, b), sep, q in zip(pairs, separated, adjusted):
        # names in board order: a is above b on the board
        if white_order.index(a) > white_order.index(b):
            out.append({"board_above": a, "whitebox_above": b, "whitebox_separated": bool(sep),
                        "holm_p": float(q)})
    return out


def format_gap(gap: dict) -> str:
    """The gap as a few readable lines."""
    lines = [f"  {'defense':<12} {'board mean':>10} {'white-box':>10} {'ratio':>6} {'worst sample':>12}"]
    for name in gap["board_order"]:
        r = gap["defenses"][name]
        lines.append(f"  {name:<12} {r['board_mean']:>10.4f} {r['whitebox_mean']:>10.4f} {r['ratio']:>6.3f} "
                     f"{r['worst_sample_ratio']:>12.2f}")
    verdict = "the same" if gap["same_order"] else "NOT the same"
    lines.append(f"  board order {' > '.join(gap['board_order'])}; white-box order "
                 f"{' > '.join(gap['whitebox_order'])}: {verdict}")
    for inv in gap.get("inversions", ()):
        lines.append(f"  inverted: the board puts {inv['board_above']} above {inv['whitebox_above']}; white-box "
                     + ("SEPARATES them the other way" if inv["whitebox_separated"] else "does not separate them")
                     + f" (paired sign-flip test, Holm over the board's pairs: p = {inv['holm_p']:.3f})")
    return "\n".join(lines)


def defense_gaps(board: Mapping[str, np.ndarray], checkpoints: Mapping[str, object], onnx_models: Mapping[str, object],
                 x: np.ndarray, y: np.ndarray, **whitebox) -> dict:
    """`board_gap` of the defenses on a board whose torch checkpoints (`checkpoints`: name ->
    checkpoint file or run folder) and ONNX files (`onnx_models`: name -> bytes or path) the
    organizer holds, on the board's samples x, y (board distances in the same order); the
    others are left out. `whitebox`: options of `whitebox_minimum`."""
    from defenses.checkpoint import load_checkpoint

    white = {name: whitebox_minimum(load_checkpoint(checkpoints[name]).model, onnx_models[name], x, y, **whitebox)[0]
             for name in board if name in checkpoints and name in onnx_models}
    return board_gap({n: board[n] for n in white}, white)
