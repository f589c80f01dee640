"""Applications on the public API: the command line (:mod:`.cli`), the demo, the benchmarks
and the soak."""
