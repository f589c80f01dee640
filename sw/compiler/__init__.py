"""The compiler: from a trained PyTorch module to the integer model the runtime runs.

Converters (:mod:`.converters`, a registry by module type) read a module into a real-valued
:mod:`.model` description; :mod:`.pruning` prunes it (load-balanced per PE, or globally);
:mod:`.quantization` turns it into integers; :mod:`.pipeline` (``ese.compile``) runs the
steps and encodes the result per PE. :mod:`.performance` predicts cycles per frame from an
encoded image. This is the only package that imports PyTorch; its modules are imported one
by one, so that this file pulls in nothing.
"""
