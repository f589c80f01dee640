"""The runtime: compiled programs, their weight images, and the machines that run them.

:mod:`.program` (``Program``, ``ese.load``), the image file (:mod:`.image`), the per-PE
encoding both ways (:mod:`.encoding`, which ``load`` and ``retarget`` need as much as the
compiler does), the integer model (:mod:`.quantized`), the bit-exact golden model
(:mod:`.golden`), frame steps for lock-step channels (:mod:`.steps`) and the host driver with
its XDMA transport (:mod:`.driver`). It imports neither PyTorch nor Amaranth and never the
compiler, so a host that only drives a card needs numpy alone.
"""
