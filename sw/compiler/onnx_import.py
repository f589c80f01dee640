"""ONNX import: the ``LSTM``, ``GRU`` and ``RNN`` operators of an ONNX graph become a model the
compiler runs.

``ese.compile("model.onnx", cfg)`` (or an ``onnx.ModelProto``) reads the graph with the ``onnx``
package and finds its recurrent nodes (LSTM, GRU, RNN), in the graph itself and in the subgraphs
of ``If``, ``Loop`` and ``Scan`` nodes, which is where exported models often keep them. Without
``node=`` the graph's own recurrent nodes must form one chain (each reads the previous one's
Y), which becomes the layers; ``node="name"`` or a list of names picks one node or a chain
anywhere. Each node must be what the hardware computes, per the operators' definitions
(onnx/docs/Operators.md, "LSTM", "GRU" and "RNN", opset 14): direction ``forward`` or
``bidirectional`` (its W, R, B, P hold the forward direction first, then the reverse one,
which becomes the layer's backward half), the
default activations (Sigmoid, Tanh, Tanh for an LSTM; Sigmoid, Tanh for a GRU; Tanh for an
RNN), no ``clip``; an LSTM's
``input_forget`` 0; a GRU's ``linear_before_reset`` 1; ``layout`` 0 or 1. Anything else is
refused naming the attribute.

The operators' tensors map onto the description exactly:

* LSTM: W [1, 4H, I], R [1, 4H, H] and B [1, 8H] hold the gates in the order i, o, f, c; the
  description's order is i, f, g (= c), o. The two bias halves (Wb, Rb) add up. P [1, 3H]
  holds the peepholes in the order i, o, f; the description's is i, f, o.
* GRU: W [1, 3H, I], R [1, 3H, H] and B [1, 6H] hold the gates in the order z, r, h; PyTorch's
  is r, z, n, which :func:`~ese.sw.compiler.converters.gru_layer` places in the hardware's
  slots. With ``linear_before_reset=1`` the candidate is tanh(W_h x + Wb_h + r * (R_h h +
  Rb_h)), PyTorch's definition; with 0 (ONNX's default) the reset gate multiplies h before
  R_h, which needs r before the candidate's recurrent products: refused, with that said.
* RNN: W [1, H, I], R [1, H, H] and B [1, 2H] (Wb, Rb, which add up): h' = tanh(W x + R h +
  Wb + Rb), a simple RNN (:func:`~ese.sw.compiler.converters.rnn_layer`).
* initial_h (and an LSTM's initial_c) may be absent, zero constants, or graph inputs (then
  give them to ``Program.predict(x, state=...)`` at run time); a constant non-zero initial
  state is refused with that advice.

Exporters seldom write W, R, B and P as initializers alone: ``torch.onnx.export`` and others
reorder and reshape them with ``Unsqueeze``, ``Reshape``, ``Concat``, ``Slice``, ``Transpose``,
``Squeeze`` or ``Cast`` nodes, sometimes inside ``If`` branches. Every such input that depends
only on initializers and ``Constant`` nodes is computed before import by the ``onnx``
package's own reference evaluator (``onnx.reference.ReferenceEvaluator``) on the sub-graph
that produces it, wherever the node lies; one that depends on a graph input is refused naming
the node, the input and the graph input.

The result is a :class:`~ese.sw.compiler.model.ModelDescription`, whose float forward pass
(:func:`~ese.sw.compiler.formats.float_forward`) the tests hold against onnxruntime.
"""

from pathlib import Path

import numpy as np

from ..contract.errors import UnsupportedModelError
from .converters import gru_layer, rnn_layer
from .model import LayerDescription, ModelDescription

__all__ = ["import_onnx", "recurrent_nodes"]

#: The recurrent operators ese compiles.
RECURRENT_OPS = ("LSTM", "GRU", "RNN")
#: ONNX's LSTM gate blocks (i, o, f, c) in the description's order (i, f, g, o).
GATE_ORDER = (0, 2, 3, 1)
#: ONNX's peepholes (i, o, f) in the description's order (i, f, o).
PEEPHOLE_ORDER = (0, 2, 1)
#: ONNX's GRU gate blocks (z, r, h) in PyTorch's order (r, z, n).
GRU_GATE_ORDER = (1, 0, 2)
#: Operators that pass a sequence through between chained nodes, changing only its shape.
_SHAPE_OPS = {"Squeeze", "Unsqueeze", "Reshape", "Transpose", "Identity", "Flatten"}
_DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"],
                        "RNN": ["Tanh"]}
#: Gate blocks of each operator's W and R.
_GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _load(model):
    try:
        import onnx
    except ImportError:
        raise UnsupportedModelError("reading ONNX models needs the onnx package (pip install "
                                    "onnx)") from None
    if isinstance(model, onnx.ModelProto):
        return model
    path = Path(model)
    if not path.is_file():
        raise UnsupportedModelError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as error:      # onnx raises DecodeError and others for a bad file
        raise UnsupportedModelError(
            f"{path} is neither an ONNX model nor a file of torch.save, torch.jit.save or "
            f"torch.export.save ({type(error).__name__}: {error})") from None


class _Graphs:
    """Every graph of a model (the main one and the subgraphs of its nodes, recursively),
    with the constants and producers of every name in them."""

    def __init__(self, model):
        from onnx import AttributeProto, numpy_helper
        self.numpy_helper = numpy_helper
        self.model = model
        self.nodes = []               # (path, node, depth): depth 0 is the main graph
        self.order = {}               # id(node) -> position in a walk that is topological
        self.constants = {}           # name -> numpy array (initializers, Constant nodes)
        self.producers = {}           # name -> node
        self.inputs = set()           # names of graph inputs that are not initializers
        self.outer = {}               # id(node) -> names its subgraphs read from outside
        self.main = model.graph

        def walk(graph, path, depth=0):
            """Walk ``graph``; return the names it reads from the graphs around it."""
            for tensor in graph.initializer:
                self.constants[tensor.name] = numpy_helper.to_array(tensor)
            initialized = {tensor.name for tensor in graph.initializer}
            self.inputs |= {i.name for i in graph.input if i.name not in initialized}
            defined = initialized | {i.name for i in graph.input}
            read = set()
            for index, node in enumerate(graph.node):
                label = node.name or f"{node.op_type}_{index}"
                self.nodes.append((f"{path}{label}", node, depth))
                self.order[id(node)] = len(self.order)
                for output in node.output:
                    self.producers[output] = node
                if node.op_type == "Constant":
                    self._constant(node)
                read |= {name for name in node.input if name}
                outer = set()
                for attribute in node.attribute:
                    if attribute.type == AttributeProto.GRAPH:
                        outer |= walk(attribute.g, f"{path}{label}.{attribute.name}/",
                                      depth + 1)
                    elif attribute.type == AttributeProto.GRAPHS:
                        for k, sub in enumerate(attribute.graphs):
                            outer |= walk(sub, f"{path}{label}.{attribute.name}[{k}]/",
                                          depth + 1)
                self.outer[id(node)] = outer
                read |= outer
                defined |= set(node.output)
            return read - defined

        walk(model.graph, "")

    def _constant(self, node):
        for attribute in node.attribute:
            if attribute.name == "value":
                self.constants[node.output[0]] = self.numpy_helper.to_array(attribute.t)

    def constant(self, name):
        """The value of ``name`` if it is a constant (through Identity nodes), else None."""
        seen = 0
        while name not in self.constants and seen < 64:
            node = self.producers.get(name)
            if node is None or node.op_type != "Identity":
                return None
            name, seen = node.input[0], seen + 1
        return self.constants.get(name)

    def fold(self, name):
        """``(value, None)`` where ``name`` depends only on initializers and Constant nodes,
        computed by onnx's reference evaluator on the nodes that produce it (through the
        subgraphs of If, Loop and Scan nodes among them); ``(None, input)`` naming the graph
        input (or subgraph input) it depends on otherwise."""
        value = self.constant(name)
        if value is not None:
            return value, None
        from onnx import helper
        from onnx.reference import ReferenceEvaluator
        needed, leaves, stack, seen = {}, set(), [name], set()
        while stack:
            current = stack.pop()
            if not current or current in seen:
                continue
            seen.add(current)
            if current in self.constants:
                leaves.add(current)
                continue
            node = self.producers.get(current)
            if node is None:
                return None, current
            if id(node) not in needed:
                needed[id(node)] = node
                stack.extend(node.input)
                stack.extend(self.outer[id(node)])
        nodes = sorted(needed.values(), key=lambda node: self.order[id(node)])
        initializers = [self.numpy_helper.from_array(np.asarray(self.constants[leaf]), leaf)
                        for leaf in sorted(leaves)]
        output = helper.make_value_info(name, helper.make_empty_tensor_value_info(name).type)
        graph = helper.make_graph(nodes, "weights", [], [output], initializers)
        model = helper.make_model(graph, opset_imports=list(self.model.opset_import),
                                  ir_version=self.model.ir_version)
        try:
            return np.asarray(ReferenceEvaluator(model).run(None, {})[0]), None
        except Exception as error:   # the reference evaluator raises many kinds
            raise UnsupportedModelError(
                f"{name!r} is computed from constants by nodes onnx's reference evaluator "
                f"cannot run ({type(error).__name__}: {error}); simplify the graph (for "
                f"example with onnxsim) or export the weights as initializers") from None


def _attributes(node):
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def recurrent_nodes(model):
    """Every recurrent (LSTM, GRU, RNN) node of an ONNX model, as ``path``: the node's name (or
    ``LSTM_<index>``, ``GRU_<index>``) after the names of the nodes whose subgraphs hold it
    (``If_0.then_branch/lstm``)."""
    return [path for path, node, _ in _Graphs(_load(model)).nodes
            if node.op_type in RECURRENT_OPS]


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _check_node(path, node):
    op = node.op_type
    attributes = _attributes(node)
    direction = _text(attributes.get("direction", b"forward"))
    if direction not in ("forward", "bidirectional"):
        raise UnsupportedModelError(
            f"{op} node {path}: attribute direction={direction!r} is not supported: ese runs a "
            f"layer forward, or both ways as a bidirectional layer (direction='forward' or "
            f"'bidirectional'), not backward alone")
    # One list of activations per direction (a bidirectional node's lists one after another).
    default = _DEFAULT_ACTIVATIONS[op] * (2 if direction == "bidirectional" else 1)
    activations = [_text(a) for a in attributes.get("activations", default)]
    if activations != default:
        raise UnsupportedModelError(
            f"{op} node {path}: attribute activations={activations} is not supported: the "
            f"hardware's tables are {default} (the default)")
    for name in ("activation_alpha", "activation_beta"):
        if name in attributes:
            raise UnsupportedModelError(f"{op} node {path}: attribute {name} is not supported "
                                        f"(the default activations take none)")
    if "clip" in attributes:
        raise UnsupportedModelError(
            f"{op} node {path}: attribute clip={attributes['clip']} is not supported: the "
            f"hardware does not clip the gate inputs; export without clip")
    if op == "LSTM" and attributes.get("input_forget", 0):
        raise UnsupportedModelError(
            f"LSTM node {path}: attribute input_forget=1 (coupled input and forget gates) is "
            f"not supported")
    if op == "GRU" and attributes.get("linear_before_reset", 0) != 1:
        raise UnsupportedModelError(
            f"GRU node {path}: attribute linear_before_reset="
            f"{attributes.get('linear_before_reset', 0)} (the reset gate applied to h before "
            f"R_h) is not supported: the hardware computes r * (R_h h + Rb_h), "
            f"linear_before_reset=1, which is PyTorch's torch.nn.GRU and what torch.onnx "
            f"exports; retrain or export the GRU in that form")
    if len(node.input) > 4 and node.input[4]:
        raise UnsupportedModelError(
            f"{op} node {path}: input sequence_lens ({node.input[4]!r}) is not supported: "
            f"the accelerator runs every frame of the sequences it is given; leave it out and "
            f"give each sequence its own length")
    layout = attributes.get("layout", 0)
    if layout not in (0, 1):
        raise UnsupportedModelError(f"{op} node {path}: attribute layout={layout} is not 0 or 1")
    return attributes


def _initial_state(graphs, path, node, position, what, hidden):
    """Check an initial_h or initial_c input: absent, zero, or a graph input; a constant one
    of hidden_size values per sequence."""
    op = node.op_type
    name = node.input[position] if len(node.input) > position else ""
    if not name:
        return None
    if name in graphs.inputs:
        return name
    value = graphs.constant(name)
    if value is None:
        value = _evaluate(graphs, name)
    if value is None:
        raise UnsupportedModelError(
            f"{op} node {path}: its {what} {name!r} is computed in the graph from values "
            f"ese cannot see; make it a graph input (and give it to predict(state=...)) or "
            f"leave it out")
    if value.ndim != 3 or value.shape[2] != hidden:
        raise UnsupportedModelError(
            f"{op} node {path}: its {what} {name!r} has shape {value.shape}, which does not "
            f"end in hidden_size={hidden}: the graph is malformed (ONNX's LSTM has no "
            f"projection; torch.onnx.export(dynamo=True) writes an nn.LSTM with proj_size "
            f"this way, without its projection); export the LSTM without proj_size, or "
            f"compile the PyTorch module itself")
    if np.any(value != 0):
        raise UnsupportedModelError(
            f"{op} node {path}: its {what} {name!r} is a constant non-zero state; programs "
            f"start from zero or from the state given at run time: pass it as "
            f"Program.predict(x, state=...)")
    return None


def _evaluate(graphs, name):
    """The value of a tensor the main graph computes from constants and input shapes alone
    (exporters build zero initial states with Shape, Expand and the like), or None: the main
    graph's ancestors of ``name`` run with onnx's reference evaluator on inputs of two
    different sizes and values, and the result counts only if both runs agree."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator
    graph = graphs.main
    producers = {output: node for node in graph.node for output in node.output}
    if name not in producers:
        return None
    needed, stack, seen = [], [name], set()
    while stack:
        current = stack.pop()
        node = producers.get(current)
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        needed.append(node)
        stack.extend(node.input)
    order = [node for node in graph.node if id(node) in seen]
    output = helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
    sub = helper.make_graph(order, "initial_state", list(graph.input), [output],
                            list(graph.initializer))
    try:
        evaluator = ReferenceEvaluator(helper.make_model(sub))
        results = []
        for size, seed in ((1, 0), (3, 1)):
            feeds = {}
            rng = np.random.default_rng(seed)
            for value_info in graph.input:
                if value_info.name in graphs.constants:
                    continue
                shape = [d.dim_value if d.dim_value > 0 else size
                         for d in value_info.type.tensor_type.shape.dim]
                feeds[value_info.name] = rng.normal(size=shape).astype(np.float32)
            results.append(evaluator.run(None, feeds)[0])
    except Exception:         # the reference evaluator raises many kinds for what it cannot run
        return None
    first, second = results
    if first.size and second.size and not (np.any(first) or np.any(second)):
        return first
    if first.shape == second.shape and np.array_equal(first, second):
        return first
    return None


def _reads(graphs, node, previous):
    """Whether ``node``'s X is ``previous``'s Y, through shape-only operators."""
    name, steps = node.input[0], 0
    while steps < 64:
        if name == previous.output[0]:
            return True
        producer = graphs.producers.get(name)
        if producer is None or producer.op_type not in _SHAPE_OPS:
            return False
        name, steps = producer.input[0], steps + 1
    return False


def _layer(graphs, path, node, attributes):
    op = node.op_type

    def tensor(position, what, required=True):
        name = node.input[position] if len(node.input) > position else ""
        if not name:
            if required:
                raise UnsupportedModelError(f"{op} node {path} has no {what}")
            return None
        value, blocking = graphs.fold(name)
        if value is None:
            raise UnsupportedModelError(
                f"{op} node {path}: its {what} {name!r} depends on {blocking!r}, which is "
                f"not a constant (a graph input, or an input of a subgraph): ese compiles "
                f"trained weights, fixed in the file; make {blocking!r} an initializer")
        if not np.issubdtype(value.dtype, np.floating):
            raise UnsupportedModelError(
                f"{op} node {path}: its {what} {name!r} holds {value.dtype} values; ese "
                f"compiles floating-point weights")
        return np.asarray(value, dtype=np.float64)

    gates = _GATES[op]
    hidden = attributes.get("hidden_size")
    directions = 2 if _text(attributes.get("direction", b"forward")) == "bidirectional" else 1
    w, r = tensor(1, "W"), tensor(2, "R")
    if (w.ndim != 3 or w.shape[0] != directions or r.ndim != 3
            or r.shape[0] != directions):
        raise UnsupportedModelError(
            f"{op} node {path}: W {w.shape} and R {r.shape} must have {directions} "
            f"direction(s)")
    hidden = hidden or r.shape[2]
    if w.shape[1] != gates * hidden or r.shape[1:] != (gates * hidden, hidden):
        raise UnsupportedModelError(f"{op} node {path}: W {w.shape} and R {r.shape} do not fit "
                                    f"hidden_size={hidden}")
    order = {"LSTM": GATE_ORDER, "GRU": GRU_GATE_ORDER, "RNN": (0,)}[op]

    def reorder(matrix):
        blocks = matrix.reshape(gates, hidden, -1)
        return np.concatenate([blocks[k] for k in order]).reshape(gates * hidden, -1)

    b = tensor(3, "B", required=False)
    if b is not None and b.shape != (directions, 2 * gates * hidden):
        raise UnsupportedModelError(f"{op} node {path}: B has shape {b.shape}, not "
                                    f"({directions}, {2 * gates * hidden})")
    p = tensor(7, "P", required=False) if op == "LSTM" else None
    if p is not None and p.shape != (directions, 3 * hidden):
        raise UnsupportedModelError(f"LSTM node {path}: P has shape {p.shape}, not "
                                    f"({directions}, {3 * hidden})")
    # Inputs: X, W, R, B, sequence_lens, initial_h (and an LSTM's initial_c, P).
    states = [_initial_state(graphs, path, node, 5, "initial_h", hidden),
              _initial_state(graphs, path, node, 6, "initial_c", hidden) if op == "LSTM"
              else None]
    found = []
    for index in range(directions):
        if op == "RNN":
            bias = (None, None) if b is None else np.split(b[index], 2)
            layer = rnn_layer(w[index], r[index], *bias)
        elif op == "GRU":
            bias = (None, None) if b is None else tuple(
                reorder(half[:, None])[:, 0] for half in np.split(b[index], 2))
            layer = gru_layer(reorder(w[index]), reorder(r[index]), *bias)
        else:
            bias = np.zeros(4 * hidden)
            if b is not None:
                bias = reorder((b[index, :4 * hidden] + b[index, 4 * hidden:])[:, None])[:, 0]
            peephole = None
            if p is not None:
                blocks = p[index].reshape(3, hidden)
                peephole = np.stack([blocks[k] for k in PEEPHOLE_ORDER])
            layer = LayerDescription(input_weights=reorder(w[index]),
                                     recurrent_weights=reorder(r[index]), bias=bias,
                                     peephole=peephole)
        # ONNX's second direction is the reverse one, its Y and states second, as PyTorch's.
        layer.direction = "backward" if index else "forward"
        found.append((layer, states))
    return found


def import_onnx(model, node=None):
    """The :class:`~ese.sw.compiler.model.ModelDescription` of an ONNX model's recurrent
    node, or chain of them.

    ``node``: None (the main graph's recurrent nodes, which must form one chain), a node's
    name or path (see :func:`recurrent_nodes`), or a list of them in chain order. The
    description's ``notes`` name the nodes (``"nodes"``) and, per layer, the graph inputs
    that hold its initial state (``"state_inputs"``: ``[initial_h, initial_c]``, None where
    absent or zero).
    """
    graphs = _Graphs(_load(model))
    found = [(path, n, depth) for path, n, depth in graphs.nodes
             if n.op_type in RECURRENT_OPS]
    if not found:
        others = sorted({n.op_type for _, n, _ in graphs.nodes if n.op_type in
                         ("Scan", "Loop")})
        raise UnsupportedModelError(
            "the ONNX model holds no LSTM, GRU or RNN node" + (
                f" (it has {', '.join(others)}, whose bodies hold none; ese compiles the LSTM, "
                f"GRU and RNN operators)" if others else ""))
    names = {}
    for path, n, _ in found:
        names[path] = (path, n)
        if n.name:
            names.setdefault(n.name, (path, n))
    listed = ", ".join(path for path, _, _ in found)
    if node is None:
        chosen = [(path, n) for path, n, depth in found if depth == 0]
        if not chosen:
            raise UnsupportedModelError(
                f"the ONNX graph's recurrent nodes all lie in subgraphs ({listed}); pick "
                f"one or a chain with node=")
    else:
        wanted = [node] if isinstance(node, str) else list(node)
        missing = [w for w in wanted if w not in names]
        if missing:
            raise UnsupportedModelError(
                f"no recurrent node {', '.join(map(repr, missing))} in the ONNX model; its "
                f"recurrent nodes are {listed}")
        chosen = [names[w] for w in wanted]
    for (before_path, before), (path, current) in zip(chosen, chosen[1:]):
        if not _reads(graphs, current, before):
            hint = "" if node is not None else "; pick one or a chain with node="
            raise UnsupportedModelError(
                f"{current.op_type} node {path} does not read {before.op_type} node "
                f"{before_path}'s output Y: they are not one chain of layers{hint}")
    layers, states, produced = [], [], None
    for path, current in chosen:
        found = _layer(graphs, path, current, _check_node(path, current))
        if produced is not None and found[0][0].inputs != produced:
            raise UnsupportedModelError(
                f"node {path} takes {found[0][0].inputs} inputs but the node before it "
                f"produces {produced}")
        produced = sum(layer.outputs for layer, _ in found)
        layers += [layer for layer, _ in found]
        states += [state for _, state in found]
    ops = sorted({current.op_type for _, current in chosen}, key=RECURRENT_OPS.index)
    return ModelDescription(
        layers, source=f"ONNX {' and '.join(ops)} " + ", ".join(p for p, _ in chosen),
        notes={"nodes": [p for p, _ in chosen], "state_inputs": states})
