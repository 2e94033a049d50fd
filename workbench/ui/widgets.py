"""LayerExplorer: the logit lens of a prompt at any layer and token position, for the base model and its adapters.

``LensView`` (``lens_view``) is the computation: one forward pass per prompt caches the residual stream of every layer
at every position; the lens of one (layer, position), of one position across all layers (probabilities and ranks), and
the layer x position grid of top tokens are then read from that cache (``lens_views`` holds the plain functions and
the figures). ``LayerExplorer`` puts ipywidgets around one LensView per model variant (the base model and each adapter): the
controls on the left, the views in tabs on the right (probability and rank by layer, the top-token grid,
KL(adapter || base) by layer, steering (``steering_panel``), the probe curve). Moving the layer slider recomputes one lens distribution
per variant shown; a new prompt runs one forward pass per variant shown. The grid, the KL and the steering view are
computed when their tab is shown (the KL costs one more pass, with the LoRA off; a steering change one steered pass,
never a generation: the greedy answers are behind their own button). Everything can be driven from Python (set a
widget's value, read the figures).

The probability figure, which every layer-slider move touches, is a plotly FigureWidget (updated in place in the
page). Every other view is a plain plotly Figure (the attributes tests read) that its tab shows through an Output
widget, as plotly's mime bundle, sent again only when it changed and its tab is shown. Not more FigureWidgets: each
ships plotly.js (5 MB) to the page as a module of its own, and with half a dozen of them a busy machine's page does
not set them up within the 2 s anywidget allows each one (their updates are then lost).
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path

import ipywidgets as w
import plotly.graph_objects as go
import plotly.io as pio

from ..causal.steering import Direction
from ..core.errors import WorkbenchError
from ..core.guide import LENS_PROMPTS, TARGETS
from ..core.models import LoadedModel, is_adapter_dir, load_model
from ..core.results import read_result
from ..experiment.layout import RunLayout
from . import lens_views as lv
from .lens_view import LensView
from .lens_views import FIG_HEIGHT, FIG_WIDTH, PLOT_CONFIG
from .steering_panel import TAB_STEER, SteeringPanel

BASE = "base model"
BOTH = "side by side"
TAB_PROBS, TAB_RANKS, TAB_GRID, TAB_KL, TAB_PROBE = ("probability", "rank", "top tokens", "KL vs base", "probe")


def _prompt_lines(text: str) -> list[str]:
    """One prompt per line; blank lines dropped, trailing spaces kept (the guide's prompts end with one)."""
    return [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


class LayerExplorer(SteeringPanel):
    """Logit lens explorer: prompt box, layer slider, token position and model switch with the top-k table on the
    left; tabs of views on the right: target probability and rank by layer, the top-token grid, KL(adapter || base),
    steering, and the probe curve when there is one.

    ``model``: a LoadedModel or a spec (``default``, a folder, a .gguf, a hub id). ``adapters``: {name: adapter folder}
    shown as variants beside the base model (and all of them side by side). ``probe``: a classifier-probe result dict
    (``baseline_classifier.json``) to draw its accuracy curve. ``labelled``: {class: prompts} (the probe's), which
    offers ``mean-diff:A,B`` steering directions. ``max_new_tokens``: the greedy answers' length.
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
        labelled: dict[str, list[str]] | None = None,
        max_new_tokens: int = 8,
    ):
        base = (
            model if isinstance(model, LoadedModel) else load_model(model, device, dtype=dtype, device_map=device_map)
        )
        self.adapters = {name: Path(path) for name, path in (adapters or {}).items()}
        for name, path in self.adapters.items():
            if not is_adapter_dir(path):
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
        self.vocab_size = self.views[BASE].vocab_size
        layer = base.classifier_layer if layer is None else layer
        if not 0 <= layer < self.n_layers:
            raise WorkbenchError(f"layer {layer} is out of range: the model has layers 0..{self.n_layers - 1}")
        self.probe = probe
        self.labelled = {c: list(ps) for c, ps in (labelled or {}).items() if ps}
        self.max_new_tokens = max_new_tokens
        self.last_update_ms: float | None = None  # the last lens update (slider, prompt, position, model)
        self.steer_update_ms: float | None = None  # the last steering view update (no generation in it)
        self.generations = 0  # greedy decodes run: only the answers button runs them
        self.current: dict[str, dict] = {}  # variant -> LensView.at of the chosen layer and position
        self.grid_current: dict[str, dict] = {}  # variant -> LensView.grid of the prompt (when its tab was drawn)
        self.kl_current: dict[str, list[float]] = {}  # adapter -> KL by layer (when its tab was drawn)
        self.steering_current: dict = {}  # the steered and unsteered lens last drawn
        self.answers_current: dict = {}  # the greedy answers last generated
        self._directions: dict[tuple, Direction] = {}
        self._norms: dict[tuple, float] = {}
        self._plain_answers: dict[tuple, str] = {}
        self._steer_key: tuple | None = None
        self._steer_drawn: tuple | None = None

        # -- controls (left) ---------------------------------------------------------------------------------------
        narrow = {"description_width": "62px"}
        self.prompt_box = w.Textarea(
            value="\n".join(prompts),
            description="prompts",
            continuous_update=False,
            style=narrow,
            layout=w.Layout(width="98%", height="5.4em"),
        )
        self.run_button = w.Button(
            description="Run", button_style="primary", tooltip="read the prompts", layout=w.Layout(width="80px")
        )
        self.prompt_pick = w.Dropdown(
            options=prompts, value=prompts[0], description="prompt", style=narrow, layout=w.Layout(width="98%")
        )
        self.layer_slider = w.IntSlider(
            value=layer,
            min=0,
            max=self.n_layers - 1,
            description="layer",
            continuous_update=False,
            style=narrow,
            layout=w.Layout(width="98%"),
        )
        self.position_pick = w.Dropdown(description="position", style=narrow, layout=w.Layout(width="98%"))
        self.variant_pick = w.Dropdown(
            options=self.variants + ([BOTH] if self.adapters else []),
            value=BASE,
            description="model",
            style=narrow,
            layout=w.Layout(width="98%"),
        )
        self.top_token = w.HTML(layout=w.Layout(width="98%"))
        self.tables = w.HBox(layout=w.Layout(flex_flow="row wrap", width="98%"))

        # -- views (right) -----------------------------------------------------------------------------------------
        self._traces = [(v, word) for v in self.variants for word in self.targets]
        names = {(v, word): word if v == BASE else f"{word} ({v})" for v, word in self._traces}
        dashes = {names[v, word]: lv.DASHES[self.variants.index(v) % len(lv.DASHES)] for v, word in self._traces}
        groups = {names[v, word]: word for v, word in self._traces}
        line = lv.layer_line(layer)
        self.trajectory_fig = go.FigureWidget(
            data=[
                go.Scatter(
                    x=list(range(self.n_layers)),
                    y=[None] * self.n_layers,
                    mode="lines+markers",
                    name=names[v, word],
                    visible=v == BASE,
                    line={"dash": dashes[names[v, word]]},
                    legendgroup=word,
                )
                for v, word in self._traces
            ],
            layout={
                "title": "Target probability by layer (dashed line: the chosen layer)",
                "template": "plotly_white",
                "xaxis": {"title": "layer"},
                "yaxis": dict(lv.PROB_AXIS),
                "shapes": [line],
                "height": FIG_HEIGHT,
                "margin": {"t": 50, "b": 40},
            },
        )
        self.rank_fig = lv.rank_figure({names[k]: None for k in self._traces}, self.vocab_size, layer, groups, dashes)
        self.rank_fig.update_layout(height=FIG_HEIGHT)
        for trace, (v, _) in zip(self.rank_fig.data, self._traces):
            trace.visible = v == BASE
        self.grid_figs: dict[str, go.Figure] = {}  # one per variant, made when first shown
        self.kl_fig = lv.kl_figure({v: None for v in self.adapters}, layer)
        self.kl_fig.update_layout(height=FIG_HEIGHT)
        self.kl_note = w.HTML()
        self.outputs = {name: w.Output() for name in (TAB_RANKS, TAB_GRID, TAB_KL, TAB_STEER, TAB_PROBE)}
        self.grid_box = self.outputs[TAB_GRID]
        self.kl_box = w.Box([self.kl_note])
        self._dirty: set[str] = set(self.outputs)  # tabs whose figures changed since they were last sent

        steer_box = self._build_steering(layer, narrow, max_new_tokens)

        self.probe_fig = None if probe is None else lv.probe_figure(probe, line, FIG_HEIGHT)
        tabs = {
            TAB_PROBS: self.trajectory_fig,
            TAB_RANKS: self.outputs[TAB_RANKS],
            TAB_GRID: self.grid_box,
            TAB_KL: self.kl_box,
            TAB_STEER: steer_box,
        }
        if self.probe_fig is not None:
            tabs[TAB_PROBE] = self.outputs[TAB_PROBE]
        self.tab_names = list(tabs)
        self.tabs = w.Tab(children=list(tabs.values()), layout=w.Layout(width="70%"))
        self.tabs.titles = tuple(self.tab_names)

        for widget, css in (
            (self.prompt_box, "wb-prompt"), (self.run_button, "wb-run"), (self.prompt_pick, "wb-prompt-pick"),
            (self.layer_slider, "wb-layer"), (self.position_pick, "wb-position"), (self.variant_pick, "wb-variant"),
            (self.top_token, "wb-top-token"), (self.tables, "wb-tables"), (self.trajectory_fig, "wb-prob-fig"),
            (self.outputs[TAB_RANKS], "wb-rank-fig"), (self.grid_box, "wb-grid"), (self.outputs[TAB_KL], "wb-kl-fig"),
            (self.outputs[TAB_PROBE], "wb-probe-fig"), (self.kl_note, "wb-kl-note"), (self.tabs, "wb-views"),
            (self.steer_direction, "wb-steer-direction"), (self.steer_layer, "wb-steer-layer"),
            (self.steer_strength, "wb-steer-strength"), (self.steer_mode, "wb-steer-mode"),
            (self.steer_generate, "wb-steer-generate"), (self.steer_answers, "wb-steer-answers"),
            (self.steer_info, "wb-steer-info"), (self.outputs[TAB_STEER], "wb-steer-fig"),
        ):  # fmt: skip
            widget.add_class(css)

        self._quiet = False
        self.prompt_box.observe(lambda _: self.read_prompts(), names="value")
        self.run_button.on_click(lambda _: self.read_prompts())
        self.prompt_pick.observe(lambda _: self._on_prompt(), names="value")
        self.layer_slider.observe(lambda _: self._guarded(self._refresh_layer), names="value")
        self.position_pick.observe(lambda _: self._guarded(self._refresh), names="value")
        self.variant_pick.observe(lambda _: self._guarded(self._refresh), names="value")
        self.tabs.observe(lambda _: self._guarded(self._on_tab), names="selected_index")
        for widget in (self.steer_direction, self.steer_layer, self.steer_strength):
            widget.observe(lambda _: self._guarded(self._draw_steering), names="value")
        self.steer_mode.observe(lambda _: self._guarded(self._draw_steering), names="value")
        self.steer_generate.on_click(lambda _: self.generate())
        self._on_prompt()

        controls = w.VBox(
            [
                self.prompt_box,
                self.run_button,
                self.prompt_pick,
                self.variant_pick,
                self.layer_slider,
                self.position_pick,
                self.top_token,
                self.tables,
            ],
            layout=w.Layout(width="30%", min_width="300px", padding="0 8px 0 0"),
        )
        controls.add_class("wb-controls")
        self.widget = w.HBox([controls, self.tabs], layout=w.Layout(width="100%", align_items="flex-start"))
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

    @property
    def tab(self) -> str:
        """The name of the view tab shown."""
        return self.tab_names[self.tabs.selected_index or 0]

    def show(self, tab: str) -> None:
        """Show a view tab by name (what clicking its title does); draws it."""
        if tab not in self.tab_names:
            raise WorkbenchError(f"no tab {tab!r}: the tabs are {', '.join(self.tab_names)}")
        self.tabs.selected_index = self.tab_names.index(tab)

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
        """Everything: the trajectories (probability and rank) at the position for each variant shown, the view tab
        shown when it is drawn on demand, and the lens at the layer."""
        start = time.perf_counter()
        shown = self.shown
        trajectories = {v: self.view(v).trajectory(self.prompt, self.position_pick.value) for v in shown}
        for fig, kind in ((self.trajectory_fig, "probs"), (self.rank_fig, "ranks")):
            with fig.batch_update():
                for trace, (variant, word) in zip(fig.data, self._traces):
                    trace.visible = variant in shown
                    if variant in trajectories:
                        trace.x = list(range(self.n_layers))
                        trace.y = trajectories[variant][kind][word]
        self._dirty |= {TAB_PROBS, TAB_RANKS}
        self._draw_visible()
        self._draw_layer(start)

    def _refresh_layer(self) -> None:
        self._draw_layer(time.perf_counter())

    def _on_tab(self) -> None:
        self._draw_visible()
        self._render_visible()

    def _draw_visible(self) -> None:
        """The tab shown, when it is one computed on demand (its numbers are cached per prompt)."""
        draw = {TAB_GRID: self._draw_grid, TAB_KL: self._draw_kl, TAB_STEER: self._update_steering}.get(self.tab)
        if draw is not None:
            draw()

    def figures(self, tab: str) -> list[go.Figure]:
        """The figures a tab shows (the grid: one per variant shown; the KL: none while the note stands instead)."""
        return {
            TAB_PROBS: [self.trajectory_fig],
            TAB_RANKS: [self.rank_fig],
            TAB_GRID: [self.grid_figs[v] for v in self.grid_current],
            TAB_KL: [self.kl_fig] if self.kl_current else [],
            TAB_STEER: [self.steer_fig] if self.steering_current else [],
            TAB_PROBE: [self.probe_fig] if self.probe_fig is not None else [],
        }[tab]

    def _render_visible(self) -> None:
        """Send the shown tab's figures to the page if they changed: one Output update (plotly's mime bundle, drawn
        by its JupyterLab renderer, which loads plotly.js once)."""
        tab = self.tab
        if tab in self._dirty and tab in self.outputs:
            self._dirty.discard(tab)
            self.outputs[tab].outputs = tuple(
                {"output_type": "display_data", "data": _plotly_bundle(fig), "metadata": {}}
                for fig in self.figures(tab)
            )
        if tab == TAB_STEER and self.steering_current:
            self._steer_label()  # after the figure: the page shows the label once the figure is there

    def _draw_layer(self, start: float) -> None:
        layer, position = self.layer_slider.value, self.position_pick.value
        self.current = {v: self.view(v).at(self.prompt, layer, position, self.top_k) for v in self.shown}
        for tab, fig in ((TAB_PROBS, self.trajectory_fig), (TAB_RANKS, self.rank_fig), (TAB_KL, self.kl_fig)):
            self._move_line(tab, fig, layer)
        if self.probe_fig is not None:
            self._move_line(TAB_PROBE, self.probe_fig, layer)
        box = lv.cell_box(layer, position)
        for fig in self.grid_figs.values():
            shape = fig.layout.shapes[0]
            if (shape.x0, shape.y0) != (box["x0"], box["y0"]):
                shape.update(box)
                self._dirty.add(TAB_GRID)
        self._render_visible()
        self.tables.children = [w.HTML(self._table(v, r)) for v, r in self.current.items()]  # figure and table
        token = self.position_pick.label.split(": ", 1)[-1] if self.position_pick.label else ""  # which tests wait on
        self.top_token.value = "<br>".join(
            f"<b>{html.escape(v)}</b> · <span class='wb-shown-prompt'>{html.escape(repr(self.prompt))}</span> · "
            f"layer {layer} · position {position} {html.escape(token)}: top token "
            f"<code class='wb-top'>{html.escape(repr(r['top'][0]['token']))}</code> (p = {r['top'][0]['prob']:.3f})"
            for v, r in self.current.items()
        )
        self.last_update_ms = 1000 * (time.perf_counter() - start)

    def _move_line(self, tab: str, fig: go.Figure, layer: int) -> None:
        if fig.layout.shapes[0].x0 != layer:
            fig.layout.shapes[0].update(x0=layer, x1=layer)
            self._dirty.add(tab)

    def _grid_fig(self, variant: str) -> go.Figure:
        if variant not in self.grid_figs:
            fig = lv.top_token_grid_figure([[]], [[]], [], 0, 0)
            fig.update_layout(height=FIG_HEIGHT)
            self.grid_figs[variant] = fig
        return self.grid_figs[variant]

    def _draw_grid(self) -> None:
        """The layer x position grid of top-1 lens tokens, one heatmap per variant shown."""
        tokens = self.views[BASE].tokens(self.prompt)
        columns = list(range(len(tokens)))
        labels = [f"{i} {lv.cell_text(t)}" for i, t in enumerate(tokens)]
        box = lv.cell_box(self.layer_slider.value, self.position_pick.value)
        self.grid_current = {v: self.view(v).grid(self.prompt) for v in self.shown}
        for variant, grid in self.grid_current.items():
            fig = self._grid_fig(variant)
            with fig.batch_update():
                heatmap = fig.data[0]
                heatmap.z = grid["probs"]
                heatmap.text = [[lv.cell_text(t) for t in row] for row in grid["tokens"]]
                heatmap.x, heatmap.y = columns, list(range(self.n_layers))
                fig.layout.xaxis.tickvals, fig.layout.xaxis.ticktext = columns, labels
                fig.layout.title.text = f"Top lens token at each layer and position: {variant} (colour: its p)"
                fig.layout.shapes[0].update(box)
        self._dirty.add(TAB_GRID)

    def _draw_kl(self) -> None:
        """KL(adapter || base) by layer for each adapter shown, or the note saying how to load one."""
        adapters = [v for v in self.shown if v != BASE]
        if not adapters:
            self.kl_current = {}
            if self.adapters:
                how = f"pick one ({', '.join(map(repr, self.adapters))}) or {BOTH!r} in the <i>model</i> menu"
            else:
                how = (
                    "start the explorer with a run folder whose adapters are then offered in the <i>model</i> menu "
                    "(<code>workbench explore --run runs/NAME</code>, or <code>adapters=</code> in Python)"
                )
            self.kl_note.value = (
                f"<div style='padding:2em'><b>Load an adapter</b> to see KL(adapter || base model) of the lens at "
                f"every layer: {how}.</div>"
            )
            self.kl_box.children = [self.kl_note]
            self._dirty.add(TAB_KL)
            return
        position = self.position_pick.value
        self.kl_current = {v: self.view(v).kl(self.prompt, position) for v in adapters}
        with self.kl_fig.batch_update():
            for trace in self.kl_fig.data:
                trace.visible = trace.name in self.kl_current
                if trace.name in self.kl_current:
                    trace.x = list(range(self.n_layers))
                    trace.y = self.kl_current[trace.name]
            self.kl_fig.layout.title.text = (
                f"KL(adapter || base) of the lens by layer, {self.prompt!r} position {position} "
                "(dashed line: the chosen layer)"
            )
        self.kl_box.children = [self.outputs[TAB_KL]]
        self._dirty.add(TAB_KL)

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
            f"<div style='margin-right:1.5em;font-size:12px;line-height:1.25'><b>{html.escape(variant)}</b>"
            f"<table><tr><th>#</th><th>token</th><th>p</th></tr>{top}</table>"
            f"<table><tr><th>target</th><th>p</th><th>rank</th></tr>{''.join(rows)}</table></div>"
        )


def _plotly_bundle(fig: go.Figure) -> dict:
    """The figure as plotly's mime bundle (what ``fig.show(renderer="plotly_mimetype")`` displays), JSON-safe, at
    FIG_WIDTH pixels unless the figure sets its own width."""
    payload = json.loads(pio.to_json(fig, validate=False))
    payload["layout"].setdefault("width", FIG_WIDTH)
    return {"application/vnd.plotly.v1+json": {**payload, "config": PLOT_CONFIG}}


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
        if is_adapter_dir(folder)
    }
    probe = read_result(run.baseline_classifier) if run.baseline_classifier.is_file() else None
    return adapters, probe
