"""Fixed-point operations in Amaranth, following the arithmetic contract.

These build the combinational logic for the rules of :mod:`ese.sw.contract.arithmetic`: round to
nearest with ties up (add half an LSB, shift right arithmetically) and saturate to a signed
width. Using the same definitions here and in the golden model is what keeps them bit-exact.
"""

from amaranth.hdl import Const, Mux, Value, signed

__all__ = ["round_shift", "saturate", "requantize"]


def round_shift(value, shift):
    """``value / 2**shift`` rounded to nearest, ties up; ``value * 2**-shift`` if shift <= 0."""
    value = Value.cast(value)
    if shift > 0:
        return (value + (1 << (shift - 1))) >> shift
    return value << (-shift)


def saturate(value, bits):
    """Clamp a signed value to ``bits`` bits; the result has shape ``signed(bits)``."""
    value = Value.cast(value)
    if value.shape().width <= bits and value.shape().signed:
        return value.as_signed()
    low, high = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    clamped = Mux(value > high, Const(high, signed(bits)),
                  Mux(value < low, Const(low, signed(bits)), value))
    return clamped[:bits].as_signed()


def requantize(value, frac, fmt):
    """Convert ``value`` with ``frac`` fraction bits to ``fmt`` (a FixedFormat)."""
    return saturate(round_shift(value, frac - fmt.frac), fmt.bits)
