"""Greedy CTC decoding and the phone error rate."""

import numpy as np

__all__ = ["greedy_decode", "edit_distance", "phone_error_rate"]


def greedy_decode(log_probs):
    """Best path: the most likely class per frame, repeats merged, blanks (0) dropped."""
    best = np.asarray(log_probs).argmax(axis=-1)
    keep = np.ones(len(best), dtype=bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(c) for c in best[keep] if c != 0]


def edit_distance(reference, hypothesis):
    """Levenshtein distance between two sequences."""
    previous = list(range(len(hypothesis) + 1))
    for i, r in enumerate(reference, 1):
        current = [i]
        for j, h in enumerate(hypothesis, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def phone_error_rate(hypotheses, references):
    """Edits over reference phones, in percent."""
    edits = sum(edit_distance(r, h) for r, h in zip(references, hypotheses))
    return 100.0 * edits / max(1, sum(len(r) for r in references))
