"""Input frames as the runtime takes them: checked, real-valued (frames, inputs) arrays."""

import sys

import numpy as np

from ..contract.errors import InputError

__all__ = ["check_frames"]


def check_frames(frames, inputs):
    """Validate a (frames, inputs) array of real numbers and return it as float64."""
    # A tensor exists only where its caller imported torch; the runtime itself never does.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    try:
        array = np.asarray(frames, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise InputError(f"input frames must be an array of real numbers ({error})") from None
    if array.ndim != 2:
        raise InputError(
            f"input frames must be a 2-D array (frames, {inputs}), not shape {array.shape}; "
            f"for a single frame use x.reshape(1, -1)")
    if array.shape[1] != inputs:
        raise InputError(
            f"the model takes {inputs} inputs per frame, but the frames have {array.shape[1]} "
            f"(array shape {array.shape})")
    if array.shape[0] == 0:
        raise InputError("no input frames: the array has shape (0, ...)")
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError(f"input frames hold {bad} NaN or infinite values; they cannot be "
                         f"encoded in fixed point")
    return array
