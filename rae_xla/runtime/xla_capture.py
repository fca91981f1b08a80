"""Replay a traced XLA step instead of re-tracing it: the step's host cost drops from a Python trace to a launch.

torch_xla's lazy mode re-runs the Python step on every call, builds its IR graph, hashes it and dispatches the
cached executable. For DiT^DH-XL (30 blocks, 376 parameter tensors and their AdamW/EMA state) that host work
takes ~2.5 s per step on a 2-core CPU host (benchmarks/results/*_host_overhead.md), while a v5p-64 runs the
step in ~0.16 s: the accelerator would wait for Python. `CapturedStep` runs the first call lazily (it creates
state such as AdamW moments), then traces the step until two traces are the same graph with the same baked-in
values (2 calls; the graph count stays the lazy path's 2), and from then on calls the compiled executable
directly with the current state tensors (`_run_cached_graph`), putting the results back into those tensors
without IR (`_replace_xla_tensor`). The graph is the one the lazy path builds, so the numbers are the lazy
path's, bit for bit (tests/runtime/test_xla_capture.py).

A step can be captured when:
  * every tensor it updates in place is in `state()` (parameters, buffers, optimizer state, EMA): a tensor the
    step updates that is not listed is detected on the first trace (an error names how many);
  * every device tensor it reads that can change between calls is in `state()` or in its arguments: a read-only
    tensor outside both (e.g. a fixed table) is allowed but its value is frozen at capture, so the second trace
    compares those values with the first, and any difference is an error;
  * every Python number it uses is the same at every call: torch_xla uploads Python scalars as device data, so
    a per-step number (a learning rate, an Adam bias correction) would be frozen silently. The second trace
    compares them too. Per-step numbers go through `prepare` hooks that run on the host before every call and
    write device tensors listed in `state()` (e.g. `ForeachAdamW.prepare_step`);
  * `state()` keeps returning the same tensor objects: it is read at traces only (building it is per-tensor
    Python); after replacing them (e.g. `optimizer.load_state_dict` mid-run) call `recapture()`. The trainers
    restore checkpoints before their first step, so their captures see the restored tensors.
Random draws inside the step (runtime.rng='device') read torch_xla's per-device seed, a graph input; the replay
passes the seed a trace at that point would have used, so `runtime.seed(s)` before a call gives the lazy path's
draws.

Private torch_xla 2.9 APIs used (the ones its dynamo bridge, torch_xla/_dynamo/dynamo_bridge.py, uses for the
same purpose): _get_tensors_xla_device_data_node, _get_graph_hash, _xla_warm_up_cache, _run_cached_graph,
_clear_pending_irs, _check_tensor_need_materialization, _check_device_tensor_need_materialization,
_replace_xla_tensor, _get_seed_info_id, _get_base_seed_as_tensor. `runtime.capture_step=False` turns this off.
"""
from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable, Sequence

import torch
import torch_xla
import torch_xla.core.xla_model as xm
from torch.utils import _pytree as pytree

_X = torch_xla._XLAC
_SEED_MUL, _SEED_ADD = 7012063, 1012031
_MAX_TRACES = 4  # Traces before giving up on two consecutive ones agreeing.  # torch_xla's per-sync seed update (lazy_graph_executor.cpp).


class CaptureError(RuntimeError):
    """The step cannot be replayed safely (a developer error in the step, not a user's input)."""


@dataclasses.dataclass
class _Graph:
    """One captured graph: hash, where each graph input comes from, what the outputs go back into."""
    graph_hash: object
    # Per graph input: ('state', i) | ('arg', i) | ('seed', None) | ('const', tensor captured at trace time).
    sources: list[tuple[str, object]]
    updated: list[int]  # Indices into state() of the tensors the step updates (the first outputs, in order).
    out_spec: pytree.TreeSpec  # The structure of the step's return value (the remaining outputs).
    const_values: list[torch.Tensor]  # Host copies of the 'const' inputs, compared between the two traces.


class CapturedStep:
    """`step(*args) -> pytree of tensors`, traced on its first two calls and replayed afterwards.

    fn: the step; args are pytrees of XLA tensors (batch dicts, running sums) whose structure, shapes and
      shardings stay fixed (a change is a new capture, like a new graph in lazy mode).
    state: returns the tensors the step reads or updates besides its arguments, in a fixed order.
    prepare: host callables run before every call (trace or replay), e.g. an optimizer's per-step scalars.
    strict: a host sync inside the traced step raises (as torch_xla.compile(full_graph=True) does).
    """

    def __init__(self, fn: Callable, *, state: Callable[[], Sequence[torch.Tensor]], name: str,
                 prepare: Sequence[Callable[[], None]] = (), device: torch.device | None = None,
                 strict: bool = False):
        self.fn, self.state, self.name, self.prepare, self.strict = fn, state, name, tuple(prepare), strict
        self.device = str(device or torch_xla.device())
        self._graph: _Graph | None = None
        self._traces = 0  # Traces of the current capture.
        self._ready = False  # Two consecutive traces agreed: replay from now on.
        self._warm = False  # The first call ran lazily (it may create state tensors).
        self._state: list[torch.Tensor] = []  # state() at the last trace: what replays read and update.
        self.replays = 0

    def __call__(self, *args):
        for hook in self.prepare:
            hook()
        flat_args, arg_spec = pytree.tree_flatten(args)
        if self._ready:
            self.replays += 1
            return self._replay(self._graph, self._state, flat_args)
        if not self._warm:
            self._warm = True
            return self._lazy(pytree.tree_unflatten(flat_args, arg_spec))
        self._state = list(self.state())
        return self._trace(self._state, flat_args, arg_spec)

    def _lazy(self, args) -> object:
        """The first call, as torch_xla.compile runs it: it may create state (AdamW moments) inside its graph,
        which the captures after it then see as state tensors."""
        torch_xla.sync()
        with self._tracing():
            out = self.fn(*args)
        torch_xla.sync()
        return out

    @contextlib.contextmanager
    def _tracing(self):
        """Lazy tracing (no eager mode), no execution inside the step when strict, the step's graph name."""
        saved_eager, saved_allow, saved_name = (_X._get_use_eager_mode(), _X._get_allow_execution(),
                                                _X._get_current_graph_name())
        _X._set_use_eager_mode(False)
        _X._set_allow_execution(not self.strict)
        _X._set_current_graph_name(self.name)
        try:
            yield
        finally:
            _X._set_allow_execution(saved_allow)
            _X._set_use_eager_mode(saved_eager)
            _X._set_current_graph_name(saved_name)

    def recapture(self) -> None:
        """Trace again at the next call: after the tensors `state()` returns were replaced by other objects
        (e.g. optimizer.load_state_dict). Between traces `state()` is not called (it is per-tensor Python)."""
        self._graph, self._traces, self._ready, self._state, self._warm = None, 0, False, [], False

    # --- Capture ---------------------------------------------------------------------------------------------------

    def _trace(self, state: list[torch.Tensor], flat_args: list, arg_spec) -> object:
        torch_xla.sync()  # Inputs become device data; the trace below is then exactly one step.
        xm.wait_device_ops()
        # Graph inputs are matched to tensors by device buffer, read before the trace replaces them with IR
        # (tensor ids are not reliable: a clone shares its source's buffer, a replaced buffer keeps the id of
        # the tensor that produced it).
        by_handle = {_buffer_handle(t): ("arg", i) for i, t in enumerate(flat_args) if isinstance(t, torch.Tensor)}
        by_handle.update({_buffer_handle(t): ("state", i) for i, t in enumerate(state)})
        args = pytree.tree_unflatten(flat_args, arg_spec)
        with self._tracing():
            out = self.fn(*args)
        flat_out, out_spec = pytree.tree_flatten(out)
        need = _X._check_tensor_need_materialization(state)
        updated = [i for i, n in enumerate(need) if n]
        outputs = [state[i] for i in updated] + list(flat_out)
        pending = sum(_X._check_device_tensor_need_materialization(self.device))
        if pending > len(outputs):
            raise CaptureError(
                f"step {self.name!r} updated {pending - len(outputs)} device tensor(s) that are neither in its "
                "state() nor returned; add them to state() or set --config.runtime.capture_step=False")
        ids, values = _X._get_tensors_xla_device_data_node(outputs)
        seed_id = _X._get_seed_info_id()
        sources = [("seed", None) if i == seed_id else by_handle.get(h) or ("const", v)
                   for i, h, v in zip(ids, _X._get_tensors_handle(list(values)), values)]
        graph_hash = _X._get_graph_hash(outputs)
        # Compiles (or finds) the executable of exactly these outputs. Buffer aliasing only for tensors marked
        # as donors (none): the lazy path's in-place aliasing would donate buffers that the replay still reads.
        # Cost: during a replayed step the updated state (parameters, AdamW moments, EMA: 16 B per parameter,
        # divided by the fsdp size) exists twice, old and new; the lazy path updates it in place.
        saved_alias = _X._xla_get_enable_alias_with_buffer_donor_config()
        _X._xla_set_enable_alias_with_buffer_donor_config(True)
        try:
            _X._xla_warm_up_cache(outputs, [])
        finally:
            _X._xla_set_enable_alias_with_buffer_donor_config(saved_alias)
        xm.wait_device_ops()  # Scalars the trace uploaded arrive asynchronously; read them below.
        consts = [v for kind, v in sources if kind == "const"]
        const_values = [c.detach().cpu().clone() for c in consts]
        results = _X._run_cached_graph(graph_hash, values)  # This step, from the traced inputs.
        _X._clear_pending_irs(self.device)  # Drop the trace's IR: the results below replace it.
        self._ready = self._same_as_previous(graph_hash, sources, const_values)
        self._graph = _Graph(graph_hash, sources, updated, out_spec,
                             [] if self._ready else const_values)  # Host copies: only until the check.
        self._traces += 1
        out = self._scatter(self._graph, state, results)
        torch_xla.sync()  # Runs the step closures (metrics) like the lazy path's sync.
        return out

    def _same_as_previous(self, graph_hash, sources, const_values) -> bool:
        """True when this trace is the previous one's graph with the same baked-in values: replay is then safe.

        A different graph is expected once or twice (the first step's inputs are laid out or aliased differently
        from the later ones', which is why lazy mode compiles 2 graphs for a training step); more is an error.
        """
        previous = self._graph
        if previous is None:
            return False
        if graph_hash != previous.graph_hash or [k for k, _ in sources] != [k for k, _ in previous.sources]:
            if self._traces + 1 >= _MAX_TRACES:
                raise CaptureError(
                    f"step {self.name!r} traced to a different graph on each of its first {_MAX_TRACES} calls (shapes, "
                    "shardings or Python control flow change between calls): it cannot be replayed; set "
                    "--config.runtime.capture_step=False")
            return False
        changed = [tuple(a.shape) for a, b in zip(previous.const_values, const_values) if not torch.equal(a, b)]
        if changed:
            raise CaptureError(
                f"step {self.name!r} bakes in {len(changed)} value(s) that changed between calls (shapes "
                f"{changed[:5]}): a Python number or a device tensor outside state() varies per step. Feed it "
                "through a `prepare` hook into a state tensor, or set --config.runtime.capture_step=False")
        return True

    # --- Replay ----------------------------------------------------------------------------------------------------

    def _replay(self, graph: _Graph, state: list[torch.Tensor], flat_args: list) -> object:
        # The lazy path syncs before and after the step; with nothing pending, a sync only advances the device
        # seed (and the step's draws read the advanced one) and runs the step closures. Both are done here
        # directly: a sync also walks every live tensor (~5 ms per 1,000 on a CPU host).
        running_seed = _X._xla_get_rng_seed()
        xm.set_rng_state(_advance_seed(running_seed), self.device)
        inputs = []
        for kind, where in graph.sources:
            if kind == "state":
                inputs.append(state[where])
            elif kind == "arg":
                inputs.append(flat_args[where])
            elif kind == "seed":
                inputs.append(_X._get_base_seed_as_tensor(self.device))  # The seed a trace here would use.
            else:
                inputs.append(where)
        results = _X._run_cached_graph(graph.graph_hash, inputs)
        out = self._scatter(graph, state, results)
        xm.set_rng_state(_advance_seed(_advance_seed(running_seed)), self.device)
        xm._run_step_closures()  # Metrics (runtime.read_on_host) leave here, as after a sync.
        return out

    @staticmethod
    def _scatter(graph: _Graph, state: list[torch.Tensor], results: list[torch.Tensor]) -> object:
        """Puts the updated values back into the state tensors (no IR) and returns the step's own outputs."""
        n = len(graph.updated)
        for i, value in zip(graph.updated, results[:n]):
            replace_data(state[i], value)
        return pytree.tree_unflatten(list(results[n:]), graph.out_spec)


def _advance_seed(seed: int) -> int:
    """torch_xla's device seed after one sync (MarkStep in lazy_graph_executor.cpp: uint64 arithmetic)."""
    return (1012031 + seed * 7012063) % (1 << 64)


def _buffer_handle(tensor: torch.Tensor) -> int:
    """The device buffer behind a materialised XLA tensor (a lazy clone holds its source's buffer through a
    device-data IR node instead of owning it)."""
    try:
        return _X._get_tensors_handle([tensor])[0]
    except RuntimeError:
        _, values = _X._get_tensors_xla_device_data_node([tensor])
        if len(values) != 1:
            raise CaptureError("a state tensor of a captured step is not materialised device data") from None
        return _X._get_tensors_handle([values[0]])[0]


def replace_data(tensor: torch.Tensor, value: torch.Tensor) -> None:
    """tensor's value becomes `value`'s buffer, without IR. torch_xla 2.9 wraps XLA tensors for functionalization:
    an in-place update lives in the wrapper's storage, from which the next read regenerates the value, so the
    new buffer goes in as the functionalization pass itself does an in-place op (replace, commit, sync)."""
    if torch._is_functional_tensor(tensor):
        inner = torch._from_functional_tensor(value) if torch._is_functional_tensor(value) else value
        torch._functionalize_replace(tensor, inner)
        torch._functionalize_commit_update(tensor)
        torch._functionalize_sync(tensor)
    else:
        _X._replace_xla_tensor(tensor, value)
