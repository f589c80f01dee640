"""The software side of ese, in layers that import only downwards.

``contract``   what both sides of the wire agree on (no torch, no amaranth)
``compiler``   PyTorch modules -> pruned, quantized integer models (the only torch importer)
``runtime``    Program, weight images, the golden model, the host driver and its transports
``tools``      the command line, demo, benchmarks and soak, on the public API
``speech``     corpus, features, training, evaluation and the recognizer, on the public API
"""
