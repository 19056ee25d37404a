"""Provides ``Loader``, the app's part that builds the model in a worker and shows it as it lands.

Two steps, two messages: ``ModelBuilt`` with a skeleton the tree paints at once, then
``StructureReady`` with the full structure, after which the probe starts.
"""

from __future__ import annotations

import gc
import threading
import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual import work
from textual.message import Message
from textual.worker import get_current_worker

from inspectr.errors import InspectrError
from inspectr.tui.base import InspectorBase

if TYPE_CHECKING:
    from inspectr.core.inspection import Report
    from inspectr.core.sources.base import LoadedModel
    from inspectr.tui.trainable import TrainableState


class Loader(InspectorBase):
    """Loads a model spec (or the model given at construction); a newer load drops an older one."""

    class ModelBuilt(Message):
        """The model exists; ``report`` is a quick skeleton (names, classes, counts): the first paint."""

        def __init__(
            self,
            generation: int,
            loaded: LoadedModel,
            report: Report,
            trainable: TrainableState,
            built_at: float,
        ) -> None:
            super().__init__()
            self.generation = generation
            self.loaded = loaded
            self.report = report
            self.trainable = trainable
            self.built_at = built_at  # perf_counter when the model existed
            self.painted = threading.Event()  # set once the tree is on screen (or the message dropped)

    class StructureReady(Message):
        """The full structure (``inspect(..., probe=False)``): extra_repr, parameter tables."""

        def __init__(self, generation: int, report: Report) -> None:
            super().__init__()
            self.generation = generation
            self.report = report

    class LoadFailed(Message):
        """Building the model failed: the app exits with the CLI's message and exit code."""

        def __init__(self, generation: int, error: InspectrError) -> None:
            super().__init__()
            self.generation = generation
            self.error = error

    def load_model(self, spec: str | None, *, from_gallery: bool = False) -> None:
        """Build the model named by ``spec`` (None: the one given at construction) in a worker."""
        self.spec = spec or self.spec
        self._from_gallery = from_gallery
        self._load_gen += 1
        self._probe_gen += 1  # a probe of the previous model is now stale
        gc.unfreeze()  # the previous model may go now
        self._train_gen += 1  # so is a training run
        self._training = False
        self._loaded, self._trainable, self.report = None, None, None
        self._rows = {}
        self.layer_detail.set_model(None)
        self.status_bar.set_probe("loading", spec or "")
        self.layer_detail.show_message(Text(f"Loading {spec or 'the model'}…", style="dim"))
        self._load(self._load_gen, spec, not from_gallery)

    @work(thread=True, exclusive=True, exit_on_error=False, group="load")
    def _load(self, generation: int, spec: str | None, user_options: bool) -> None:
        from inspectr.core.freeze import apply_globs, apply_plan, load_plan
        from inspectr.core.inspect import inspect, parse_kwargs, resolve_device
        from inspectr.core.sources.loader import load
        from inspectr.tui.trainable import TrainableState

        # a gallery pick takes the device, not the constructor/freeze flags meant for the CLI's model
        opts = self.options if user_options else {"device": self.options.get("device")}
        try:
            device = resolve_device(opts.get("device"))
            if spec is None and self._given is not None:
                loaded = self._given
            else:
                loaded = load(
                    spec or "",
                    parse_kwargs(opts.get("kwargs")),
                    opts.get("weights"),
                    bool(opts.get("trust_pickle")),
                    device,
                    pretrained=bool(opts.get("pretrained")),
                )
            built = time.perf_counter()
            with self._model_lock:
                # --freeze-plan / --freeze / --unfreeze, once, in inspect's order
                plan_file = opts.get("freeze_plan")
                if plan_file:
                    apply_plan(loaded.model, load_plan(plan_file))
                apply_globs(loaded.model, opts.get("freeze") or [], opts.get("unfreeze") or [])
                trainable = TrainableState(loaded.model)
                skeleton = trainable.skeleton(
                    loaded.name, loaded.source, loaded.description, device
                )
                built_message = Loader.ModelBuilt(generation, loaded, skeleton, trainable, built)
                self.post_message(built_message)
                # let the first paint have the interpreter before the full structure is counted
                worker = get_current_worker()
                for _ in range(50):
                    if built_message.painted.wait(timeout=0.1) or worker.is_cancelled:
                        break
                report = inspect(None, loaded=loaded, probe=False, device=device)
                trainable.apply()  # toggles made meanwhile
        except InspectrError as err:
            self.post_message(Loader.LoadFailed(generation, err))
            return
        except Exception as exc:  # a user's model can raise anything while it is built
            wrapped = InspectrError(
                f"Loading {spec or 'the model'} failed: {type(exc).__name__}: {exc}.",
                "Run `inspectr SPEC --report --debug` to see the traceback.",
            )
            self.post_message(Loader.LoadFailed(generation, wrapped))
            return
        self.post_message(Loader.StructureReady(generation, report))

    def on_loader_model_built(self, message: Loader.ModelBuilt) -> None:
        if message.generation != self._load_gen:
            message.painted.set()
            return
        self._loaded, self._trainable, self.report = (
            message.loaded,
            message.trainable,
            message.report,
        )
        self._rows = {}
        self.layer_detail.set_model(message.trainable.params_of)
        tree = self.module_tree
        tree.show_model(message.report, message.trainable)
        m = message.report.model
        tree.border_title = f"{m.name} · {m.class_name}"
        self.sub_title = m.name
        self.search_bar.entries = list(message.trainable.types.items())
        self._update_totals()
        self._set_context(message.report.probe.device, self._mode_label())
        self._show_detail("")
        tree.focus()
        self.timings["skeleton"] = time.perf_counter() - message.built_at
        self.call_after_refresh(self._painted, message)

    def on_loader_structure_ready(self, message: Loader.StructureReady) -> None:
        if message.generation != self._load_gen or self._trainable is None:
            return
        self.report = message.report
        self._rows = {r.path: r for r in message.report.modules}
        self.module_tree.update_report(message.report)
        self._refresh_detail()
        # the model, its rows and tree nodes live as long as the app shows them: keep the cycle
        # collector from walking them again and again (a 20,000-module model: 0.3 s pauses)
        gc.collect()
        gc.freeze()
        if self.probe_enabled:
            self.request_probe()
        else:
            self.status_bar.set_probe("off")
            self.findings_list.show_state(
                "The probe is off (--no-probe): structure and counts only."
            )

    def _painted(self, message: Loader.ModelBuilt) -> None:
        self.timings["first_paint"] = time.perf_counter() - message.built_at
        message.painted.set()

    def on_loader_load_failed(self, message: Loader.LoadFailed) -> None:
        if message.generation != self._load_gen:
            return
        if self._from_gallery:
            self.notify(
                str(message.error), title="Could not load the model", severity="error", markup=False
            )
            self.action_gallery()
            return
        self.error = message.error
        self.exit(message.error.exit_code, return_code=message.error.exit_code)

    def _mode_label(self) -> str:
        mode = self.options.get("mode", "own")
        if mode in ("train", "eval"):
            return mode
        model = self._loaded.model if self._loaded else None
        return "train" if model is None or model.training else "eval"
