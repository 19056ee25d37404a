"""Provides ``Prober``, the app's part that runs the probe in a worker and hands its report down.

A thread can't be killed, only told: a newer request bumps the generation, the running probe
sees it between phases and unwinds, and a result that still lands is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual import work
from textual.message import Message
from textual.worker import get_current_worker

from inspectr.errors import InspectrError
from inspectr.tui.base import InspectorBase

if TYPE_CHECKING:
    from inspectr.core.inspection import Report


class Prober(InspectorBase):
    """Probes the loaded model with the freeze state as it is; the latest request wins."""

    class ProbeFinished(Message):
        """A probe landed; the app drops it when ``generation`` is older than the latest request."""

        def __init__(self, generation: int, report: Report, version: int) -> None:
            super().__init__()
            self.generation = generation
            self.report = report
            self.version = version  # the TrainableState version the probe ran with

    class ProbeFailed(Message):
        """The probe could not run at all (no inputs, bad options): shown in the app, which stays up."""

        def __init__(self, generation: int, message: str) -> None:
            super().__init__()
            self.generation = generation
            self.message = message

    def request_probe(self) -> None:
        """Start a probe; any probe still running is told to stop and its result is dropped."""
        if self._loaded is None or not self.probe_enabled:
            return
        self._probe_gen += 1
        self.status_bar.set_probe("running")
        if self.report is not None and not self.report.probe.ran:
            self.findings_list.show_state("Probing…")
        self._probe(self._probe_gen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="probe")
    def _probe(self, generation: int) -> None:
        from inspectr.core.inspect import inspect
        from inspectr.core.probe.run import ProbeCancelled

        worker = get_current_worker()
        loaded, trainable = self._loaded, self._trainable
        if loaded is None or trainable is None:
            return

        def cancelled() -> bool:
            return generation != self._probe_gen or worker.is_cancelled

        with self._model_lock:  # an older probe still unwinding finishes first
            if cancelled():
                return
            version = trainable.version
            trainable.apply()
            try:
                report = inspect(
                    None,
                    loaded=loaded,
                    histograms=True,
                    cancelled=cancelled,
                    **self._probe_options(),
                )
            except ProbeCancelled:
                return
            except InspectrError as err:
                self.post_message(Prober.ProbeFailed(generation, str(err)))
                return
            except Exception as exc:  # the probe reports model errors itself; this is anything else
                self.post_message(Prober.ProbeFailed(generation, f"{type(exc).__name__}: {exc}"))
                return
            finally:
                trainable.apply()  # toggles made while the probe held the model
        self.post_message(Prober.ProbeFinished(generation, report, version))

    def on_prober_probe_finished(self, message: Prober.ProbeFinished) -> None:
        if message.generation != self._probe_gen or self._trainable is None:
            return
        report = message.report
        self.report = report
        self._rows = {r.path: r for r in report.modules}
        self.status_bar.set_memory(report.memory.training_peak_bytes if report.memory else None)
        self._probe_version = message.version
        self.module_tree.update_report(report)
        self.findings_list.show_findings(report.findings)
        status = self.status_bar
        self._set_context(report.probe.device, report.probe.mode)
        p = report.probe
        if p.error is not None:
            where = p.error.module or "(root)"
            kind = f", {p.error.module_type}" if p.error.module_type else ""
            status.set_probe("failed", f"at {where} ({p.error.phase}{kind})")
        elif message.version != self._trainable.version:
            status.set_probe("stale", "freezing changed during the probe")
        else:
            status.set_probe(
                "done",
                f"{p.seconds:.2f} s" + ("" if p.backward == "ran" else f" · backward {p.backward}"),
            )
        self._refresh_detail()

    def on_prober_probe_failed(self, message: Prober.ProbeFailed) -> None:
        if message.generation != self._probe_gen:
            return
        self.status_bar.set_probe("failed", "")
        self.findings_list.show_findings((), failure=message.message)
        self.notify(
            message.message,
            title="The probe did not run",
            severity="error",
            markup=False,
            timeout=10,
        )

    def action_reprobe(self) -> None:
        if self._loaded is None:
            return
        if not self.probe_enabled:
            self.options["probe"] = True
        self.request_probe()
