"""The contract: everything the software and the hardware agree on.

The hardware parameters (:mod:`.config`), the fixed-point arithmetic (:mod:`.arithmetic`), the
memory map and load stream (:mod:`.memory_map`), the register map (:mod:`.registers`), the
host's stream words (:mod:`.wire`) and the errors a user can cause (:mod:`.errors`). It
imports nothing of the project and neither PyTorch nor Amaranth, so both sides can read it.
"""
