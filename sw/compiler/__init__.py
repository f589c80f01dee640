"""The compiler: from a trained model to the integer model the runtime runs.

Front ends (:mod:`.frontends`, a registry by object or file content: PyTorch modules and their
saved forms through :mod:`.converters`, :mod:`.onnx_import`, :mod:`.keras_import`,
:mod:`.brevitas_import`) read a model into a real-valued :mod:`.model` description;
:mod:`.pruning` prunes it (load-balanced per PE, or globally); :mod:`.formats` chooses its
fixed-point formats; :mod:`.quantization` turns it into integers; :mod:`.pipeline`
(``ese.compile``) runs the steps and encodes the result per PE. :mod:`.performance` predicts
cycles per frame from an encoded image. This is the only package that imports PyTorch (and,
inside the functions that read their models, the optional keras and brevitas); its modules
are imported one by one, so that this file pulls in nothing.
"""
