"""LayerExplorer: the logit lens of a prompt at any layer and token position, for the base model and its adapters.

``LensView`` is the computation: one forward pass per prompt caches the residual stream of every layer at every
position; the lens of one (layer, position), or of one position across all layers, is then read from that cache.
``LayerExplorer`` puts ipywidgets and plotly FigureWidgets around one LensView per model variant (the base model and
each adapter). Moving the layer slider recomputes one lens distribution per variant shown; a new prompt runs one
forward pass per variant shown. Everything can be driven from Python (set a widget's value, read the figures).
"""

from __future__ import annotations

import html
import time
from collections import OrderedDict
from pathlib import Path

import ipywidgets as w
import plotly.graph_objects as go
import torch

from ..core.activations import capture_positions
from ..core.errors import WorkbenchError
from ..core.guide import LENS_PROMPTS, TARGETS
from ..core.lens import lens_log_probs, ranks_of, resolve_targets
from ..core.models import LoadedModel, load_model
from ..core.results import read_result
from ..experiment.layout import RunLayout

BASE = "base model"
BOTH = "side by side"


class LensView:
    """The logit lens of one model on prompts, from cached residuals. ``forward_passes`` counts model runs."""

    def __init__(self, lm: LoadedModel, targets: list[str], cache_size: int = 32):
        self.lm = lm
        self.targets = resolve_targets(lm, targets)
        self.target_ids = torch.tensor([t.token_id for t in self.targets], device=lm.device)
        self.forward_passes = 0
        self.cache_size = cache_size
        self._resid: OrderedDict[str, torch.Tensor] = OrderedDict()  # prompt -> [n_layers, n_tokens, d_model]
        self._trajectories: dict[tuple[str, int], dict] = {}

    def residuals(self, prompt: str) -> torch.Tensor:
        if prompt not in self._resid:
            self._resid[prompt] = capture_positions(self.lm, prompt)
            self.forward_passes += 1
            while len(self._resid) > self.cache_size:
                dropped, _ = self._resid.popitem(last=False)
                self._trajectories = {k: v for k, v in self._trajectories.items() if k[0] != dropped}
        self._resid.move_to_end(prompt)
        return self._resid[prompt]

    def tokens(self, prompt: str) -> list[str]:
        return [self.lm.tokenizer.decode([i]) for i in self.lm.token_ids(prompt)]

    def _position(self, prompt: str, position: int | None) -> int:
        n = self.residuals(prompt).shape[1]
        position = n - 1 if position is None else position
        if not -n <= position < n:
            raise WorkbenchError(f"position {position} is outside the prompt's {n} tokens: pick 0..{n - 1}")
        return position % n

    @torch.inference_mode()
    def at(self, prompt: str, layer: int, position: int | None = None, k: int = 10) -> dict:
        """Top-k tokens and each target's probability and rank at one layer and position (default: the last token)."""
        resid = self.residuals(prompt)
        if not 0 <= layer < resid.shape[0]:
            raise WorkbenchError(f"layer {layer} is out of range: the model has layers 0..{resid.shape[0] - 1}")
        position = self._position(prompt, position)
        log_probs = lens_log_probs(self.lm, resid[layer, position][None])  # [1, vocab]
        top = torch.topk(log_probs[0], k)
        ranks = ranks_of(log_probs, self.target_ids)[0]
        return {
            "layer": layer,
            "position": position,
            "top": [
                {"token": self.lm.tokenizer.decode([int(i)]), "token_id": int(i), "prob": float(p.exp())}
                for p, i in zip(top.values, top.indices)
            ],
            "targets": {
                t.word: {"token": t.token, "prob": float(log_probs[0, t.token_id].exp()), "rank": int(r)}
                for t, r in zip(self.targets, ranks)
            },
        }

    @torch.inference_mode()
    def trajectory(self, prompt: str, position: int | None = None) -> dict:
        """Each target's probability and rank at every layer, at one position (cached per prompt and position)."""
        position = self._position(prompt, position)
        key = (prompt, position)
        if key not in self._trajectories:
            log_probs = lens_log_probs(self.lm, self.residuals(prompt)[:, position])  # [n_layers, vocab]
            ranks = ranks_of(log_probs, self.target_ids)
            chosen = log_probs[:, self.target_ids].exp()
            self._trajectories[key] = {
                "probs": {t.word: chosen[:, j].tolist() for j, t in enumerate(self.targets)},
                "ranks": {t.word: ranks[:, j].tolist() for j, t in enumerate(self.targets)},
            }
        return self._trajectories[key]


def _prompt_lines(text: str) -> list[str]:
    """One prompt per line; blank lines dropped, trailing spaces kept (the guide's prompts end with one)."""
    return [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


class LayerExplorer:
    """Logit lens explorer: prompt box, layer slider, token position, model switch, top-k table, target trajectories.

    ``model``: a LoadedModel or a spec (``default``, a folder, a .gguf, a hub id). ``adapters``: {name: adapter folder}
    shown as variants beside the base model (and all of them side by side). ``probe``: a classifier-probe result dict
    (``baseline_classifier.json``) to draw its accuracy curve under the trajectories.
    """

    def __init__(
        self,
        model: LoadedModel | str = "default",
        prompts: list[str] | None = None,
        targets: list[str] | None = None,
        adapters: dict[str, str | Path] | None = None,
        probe: dict | None = None,
        layer: int | None = None,
        top_k: int = 10,
        device: str | None = None,
        dtype: str = "auto",
        device_map: str | None = None,
    ):
        base = (
            model if isinstance(model, LoadedModel) else load_model(model, device, dtype=dtype, device_map=device_map)
        )
        self.adapters = {name: Path(path) for name, path in (adapters or {}).items()}
        for name, path in self.adapters.items():
            if not (path / "adapter_config.json").is_file():
                raise WorkbenchError(
                    f"adapter {name!r}: {str(path)!r} holds no adapter_config.json: "
                    f"pass a folder written by `workbench train sft`"
                )
        prompts = list(prompts or LENS_PROMPTS)
        if not prompts or not all(p.strip() for p in prompts):
            raise WorkbenchError("no prompts: pass prompts=['7 * 8 = ', ...] (no empty ones)")
        self.targets = list(targets or TARGETS)
        self.top_k = top_k
        # adapters load like the base model: same dtype, same device or device map
        self.load_options = dict(device=None, device_map=device_map) if device_map else dict(device=base.device)
        self.load_options["dtype"] = base.dtype
        self.spec = base.source.spec
        self.variants = [BASE, *self.adapters]
        self.views: dict[str, LensView] = {BASE: LensView(base, self.targets)}
        self.n_layers = base.n_layers
        layer = base.classifier_layer if layer is None else layer
        if not 0 <= layer < self.n_layers:
            raise WorkbenchError(f"layer {layer} is out of range: the model has layers 0..{self.n_layers - 1}")
        self.probe = probe
        self.last_update_ms: float | None = None
        self.current: dict[str, dict] = {}

        self.prompt_box = w.Textarea(
            value="\n".join(prompts),
            description="prompts",
            continuous_update=False,
            layout=w.Layout(width="60%", height="5.5em"),
        )
        self.run_button = w.Button(description="Run", button_style="primary", tooltip="read the prompts")
        self.prompt_pick = w.Dropdown(options=prompts, value=prompts[0], description="prompt")
        self.layer_slider = w.IntSlider(
            value=layer,
            min=0,
            max=self.n_layers - 1,
            description="layer",
            continuous_update=False,
            layout=w.Layout(width="60%"),
        )
        self.position_pick = w.Dropdown(description="position")
        self.variant_pick = w.ToggleButtons(
            options=self.variants + ([BOTH] if self.adapters else []), value=BASE, description="model"
        )
        self.top_token = w.HTML()
        self.tables = w.HBox()
        for widget, css in (
            (self.prompt_box, "wb-prompt"),
            (self.run_button, "wb-run"),
            (self.prompt_pick, "wb-prompt-pick"),
            (self.layer_slider, "wb-layer"),
            (self.position_pick, "wb-position"),
            (self.variant_pick, "wb-variant"),
            (self.top_token, "wb-top-token"),
            (self.tables, "wb-tables"),
        ):
            widget.add_class(css)

        dashes = ["solid", "dash", "dot", "dashdot"]
        self._traces = [(v, word) for v in self.variants for word in self.targets]
        line = {
            "type": "line",
            "x0": layer,
            "x1": layer,
            "y0": 0,
            "y1": 1,
            "yref": "paper",
            "line": {"color": "grey", "dash": "dash"},
        }
        self.trajectory_fig = go.FigureWidget(
            data=[
                go.Scatter(
                    x=list(range(self.n_layers)),
                    y=[None] * self.n_layers,
                    mode="lines+markers",
                    name=word if v == BASE else f"{word} ({v})",
                    visible=v == BASE,
                    line={"dash": dashes[self.variants.index(v) % len(dashes)]},
                    legendgroup=word,
                )
                for v, word in self._traces
            ],
            layout={
                "title": "Target probability by layer (dashed line: the chosen layer)",
                "template": "plotly_white",
                "xaxis": {"title": "layer"},
                "yaxis": {"title": "lens probability (log scale)", "type": "log", "exponentformat": "power"},
                "shapes": [line],
                "height": 380,
                "margin": {"t": 50, "b": 40},
            },
        )
        self.probe_fig = None
        if probe is not None:
            rows = probe["layer_results"]
            self.probe_fig = go.FigureWidget(
                data=[
                    go.Scatter(
                        x=[r["layer"] for r in rows],
                        y=[r["accuracy"] for r in rows],
                        mode="lines+markers",
                        name="probe accuracy",
                    ),
                    go.Scatter(
                        x=[r["layer"] for r in rows],
                        y=[r["control_accuracy"] for r in rows],
                        mode="lines",
                        name="control task",
                        line={"dash": "dot"},
                    ),
                ],
                layout={
                    "title": f"Linear-probe accuracy by layer ({probe.get('model', '')})",
                    "template": "plotly_white",
                    "xaxis": {"title": "layer"},
                    "yaxis": {"title": "CV accuracy", "range": [0, 1.05]},
                    "shapes": [dict(line)],
                    "height": 300,
                    "margin": {"t": 50, "b": 40},
                },
            )

        self._quiet = False
        self.prompt_box.observe(lambda _: self.read_prompts(), names="value")
        self.run_button.on_click(lambda _: self.read_prompts())
        self.prompt_pick.observe(lambda _: self._on_prompt(), names="value")
        self.layer_slider.observe(lambda _: self._guarded(self._refresh_layer), names="value")
        self.position_pick.observe(lambda _: self._guarded(self._refresh), names="value")
        self.variant_pick.observe(lambda _: self._guarded(self._refresh), names="value")
        self._on_prompt()

        children = [
            w.HBox([self.prompt_box, self.run_button]),
            self.prompt_pick,
            self.variant_pick,
            self.layer_slider,
            self.position_pick,
            self.top_token,
            self.tables,
            self.trajectory_fig,
        ]
        self.widget = w.VBox(children + ([self.probe_fig] if self.probe_fig is not None else []))
        self.widget.add_class("wb-explorer")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def shown(self) -> list[str]:
        return self.variants if self.variant_pick.value == BOTH else [self.variant_pick.value]

    @property
    def prompt(self) -> str:
        return self.prompt_pick.value

    def view(self, variant: str) -> LensView:
        if variant not in self.views:
            lm = load_model(self.spec, adapter=self.adapters[variant], **self.load_options)
            self.views[variant] = LensView(lm, self.targets)
        return self.views[variant]

    def _guarded(self, update) -> None:
        if not self._quiet:
            update()

    def read_prompts(self) -> None:
        """Take the prompt box's lines as the prompts (the first one is shown)."""
        prompts = _prompt_lines(self.prompt_box.value)
        if not prompts:
            self.top_token.value = "<b>no prompt</b>: type one prompt per line"
            return
        if list(self.prompt_pick.options) == prompts:
            return
        self._quiet = True
        try:
            self.prompt_pick.options = prompts
            self.prompt_pick.value = prompts[0]
        finally:
            self._quiet = False
        self._on_prompt()

    def _on_prompt(self) -> None:
        if self._quiet:
            return
        tokens = self.views[BASE].tokens(self.prompt)  # the tokenization is the same for every variant
        self._quiet = True
        try:
            self.position_pick.options = [(f"{i}: {t!r}", i) for i, t in enumerate(tokens)]
            self.position_pick.value = len(tokens) - 1
        finally:
            self._quiet = False
        self._refresh()

    # -- drawing -------------------------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Everything: lens at the layer, and the trajectories at the position, for each variant shown."""
        start = time.perf_counter()
        shown = self.shown
        trajectories = {v: self.view(v).trajectory(self.prompt, self.position_pick.value) for v in shown}
        with self.trajectory_fig.batch_update():
            for trace, (variant, word) in zip(self.trajectory_fig.data, self._traces):
                trace.visible = variant in shown
                if variant in trajectories:
                    trace.y = trajectories[variant]["probs"][word]
        self._draw_layer(start)

    def _refresh_layer(self) -> None:
        self._draw_layer(time.perf_counter())

    def _draw_layer(self, start: float) -> None:
        layer, position = self.layer_slider.value, self.position_pick.value
        self.current = {v: self.view(v).at(self.prompt, layer, position, self.top_k) for v in self.shown}
        for fig in (self.trajectory_fig, self.probe_fig):
            if fig is not None:
                with fig.batch_update():
                    fig.layout.shapes[0].x0 = layer
                    fig.layout.shapes[0].x1 = layer
        self.tables.children = [w.HTML(self._table(v, r)) for v, r in self.current.items()]  # before the label,
        token = self.position_pick.label.split(": ", 1)[-1] if self.position_pick.label else ""  # which tests wait on
        self.top_token.value = "<br>".join(
            f"<b>{html.escape(v)}</b> · <span class='wb-shown-prompt'>{html.escape(repr(self.prompt))}</span> · "
            f"layer {layer} · position {position} {html.escape(token)}: top token "
            f"<code class='wb-top'>{html.escape(repr(r['top'][0]['token']))}</code> (p = {r['top'][0]['prob']:.3f})"
            for v, r in self.current.items()
        )
        self.last_update_ms = 1000 * (time.perf_counter() - start)

    def _table(self, variant: str, result: dict) -> str:
        def code(text: str) -> str:
            return f"<code>{html.escape(text)}</code>"

        top = "".join(
            f"<tr><td>{i}</td><td>{code(repr(t['token']))}</td><td>{t['prob']:.4f}</td></tr>"
            for i, t in enumerate(result["top"], 1)
        )
        rows = []
        for word, t in result["targets"].items():
            read_as = "" if t["token"] == word else f" (as {code(repr(t['token']))})"
            rows.append(f"<tr><td>{code(word)}{read_as}</td><td>{t['prob']:.2e}</td><td>{t['rank']}</td></tr>")
        return (
            f"<div style='margin-right:2em'><b>{html.escape(variant)}</b>"
            f"<table><tr><th>#</th><th>token</th><th>p</th></tr>{top}</table>"
            f"<table><tr><th>target</th><th>p</th><th>rank</th></tr>{''.join(rows)}</table></div>"
        )


def run_artifacts(run_dir: str | Path | None) -> tuple[dict[str, Path], dict | None]:
    """What a run folder offers the explorer: its phase-1 and phase-2 adapters (of the first training seed) and the
    base model's probe result. Nothing (and no error) for None; a folder that does not exist is a one-line error."""
    if run_dir is None or str(run_dir).strip() == "":
        return {}, None
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise WorkbenchError(
            f"run folder {str(run_dir)!r} does not exist: pass a folder `workbench run` wrote, or none"
        )
    run = RunLayout(run_dir)
    files = next(iter(run.seeds().values()))  # the first training seed's, or the run folder's own
    adapters = {
        name: folder
        for name, folder in (("phase 1", files.phase1_adapter), ("phase 2", files.phase2_adapter))
        if (folder / "adapter_config.json").is_file()
    }
    probe = read_result(run.baseline_classifier) if run.baseline_classifier.is_file() else None
    return adapters, probe
