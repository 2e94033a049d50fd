"""LayerExplorer: the logit lens (or another readout: the shortcut, Patchscope, a saved tuned lens) of a prompt at any
layer and token position, for the base model and its adapters.

ipywidgets around one ``LensView`` (``lens_view``: one cached forward pass per prompt) per model variant (the base
model and each adapter): the controls on the left, the views in tabs on the right (probability and rank by layer, the
top-token grid, KL(adapter || base) by layer, steering (``steering_panel``), the probe curve), drawn by
``lens_figures`` and ``lens_text``. Moving the layer slider recomputes one lens distribution per variant shown; a new
prompt runs one forward pass per variant shown. The grid, the KL and the steering view are computed when their tab is
shown (the KL costs one more pass, with the LoRA off; a steering change one steered pass, never a generation: the
greedy answers are behind their own button). Everything can be driven from Python (set a widget's value, read the
figures).

The probability figure, which every layer-slider move touches, is a plotly FigureWidget (updated in place in the
page). Every other view is a plain plotly Figure (the attributes tests read) that its tab shows through an Output
widget, as plotly's mime bundle, sent again only when it changed and its tab is shown. Not more FigureWidgets: each
ships plotly.js (5 MB) to the page as a module of its own, and with half a dozen of them a busy machine's page does
not set them up within the 2 s anywidget allows each one (their updates are then lost).
"""

from __future__ import annotations

import time
from pathlib import Path

import ipywidgets as w
import plotly.graph_objects as go

from ..core.errors import WorkbenchError
from ..core.guide import LENS_PROMPTS, TARGETS
from ..core.models import LoadedModel, is_adapter_dir, load_model
from . import lens_figures, lens_text
from .lens_view import READOUTS, LensView
from .steering_panel import TAB_STEER, SteeringPanel

BASE = "base model"
BOTH = "side by side"
TAB_PROBS, TAB_RANKS, TAB_GRID, TAB_KL, TAB_PROBE = ("probability", "rank", "top tokens", "KL vs base", "probe")
NARROW = {"description_width": "62px"}  # the controls' label width


def _prompt_lines(text: str) -> list[str]:
    """One prompt per line; blank lines dropped, trailing spaces kept (the guide's prompts end with one)."""
    return [line for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


def _checked_adapters(adapters: dict[str, str | Path] | None) -> dict[str, Path]:
    checked = {name: Path(path) for name, path in (adapters or {}).items()}
    for name, path in checked.items():
        if not is_adapter_dir(path):
            raise WorkbenchError(
                f"adapter {name!r}: {str(path)!r} holds no adapter_config.json: "
                f"pass a folder written by `workbench train sft`"
            )
    return checked


class LayerExplorer(SteeringPanel):
    """Logit lens explorer: prompt box, model and readout switches, layer slider and token position with the top-k
    table on the left; tabs of views on the right: target probability and rank by layer, the top-token grid (these
    three through the readout picked), KL(adapter || base), steering, and the probe curve when there is one.

    ``model``: a LoadedModel or a spec (``default``, a folder, a .gguf, a hub id). ``adapters``: {name: adapter folder}
    shown as variants beside the base model (and all of them side by side). ``probe``: a classifier-probe result dict
    (``baseline_classifier.json``) to draw its accuracy curve. ``labelled``: {class: prompts} (the probe's), which
    offers ``mean-diff:A,B`` steering directions. ``max_new_tokens``: the greedy answers' length. ``readouts``: the
    readout switch's choices (``lens_view.make_readout``); ``tuned``: a saved tuned lens's folder, added to them.
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
        readouts: tuple[str, ...] = READOUTS,
        tuned: str | Path | None = None,
    ):
        base = (
            model if isinstance(model, LoadedModel) else load_model(model, device, dtype=dtype, device_map=device_map)
        )
        self.adapters = _checked_adapters(adapters)
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
        self.readouts, self.tuned = [*readouts, *(["tuned"] if tuned else [])], tuned
        self._init_state()
        self._build_controls(prompts, layer)
        self._build_views(layer)
        self._build_tabs(self._build_steering(layer, NARROW, max_new_tokens))
        self._add_css_classes()
        self._observe_controls()
        self._on_prompt()
        self.widget = self._layout()

    def _init_state(self) -> None:
        self.last_update_ms: float | None = None  # the last lens update (slider, prompt, position, model)
        self.current: dict[str, dict] = {}  # variant -> LensView.at of the chosen layer and position
        self.grid_current: dict[str, dict] = {}  # variant -> LensView.grid of the prompt (when its tab was drawn)
        self.kl_current: dict[str, list[float]] = {}  # adapter -> KL by layer (when its tab was drawn)
        self._quiet = False  # set while the explorer itself changes controls: their observers then do nothing

    def _build_controls(self, prompts: list[str], layer: int) -> None:
        """The controls on the left: prompts, the model switch, layer and position, the top token and tables."""
        self.prompt_box = w.Textarea(
            value="\n".join(prompts),
            description="prompts",
            continuous_update=False,
            style=NARROW,
            layout=w.Layout(width="98%", height="5.4em"),
        )
        self.run_button = w.Button(
            description="Run", button_style="primary", tooltip="read the prompts", layout=w.Layout(width="80px")
        )
        self.prompt_pick = w.Dropdown(
            options=prompts, value=prompts[0], description="prompt", style=NARROW, layout=w.Layout(width="98%")
        )
        self.layer_slider = w.IntSlider(
            value=layer,
            min=0,
            max=self.n_layers - 1,
            description="layer",
            continuous_update=False,
            style=NARROW,
            layout=w.Layout(width="98%"),
        )
        self.position_pick = w.Dropdown(description="position", style=NARROW, layout=w.Layout(width="98%"))
        wide = dict(style=NARROW, layout=w.Layout(width="98%"))
        variants = self.variants + ([BOTH] if self.adapters else [])
        self.variant_pick = w.Dropdown(options=variants, value=BASE, description="model", **wide)
        self.readout_pick = w.Dropdown(options=self.readouts, value="logit", description="readout", **wide)
        self.top_token = w.HTML(layout=w.Layout(width="98%"))
        self.tables = w.HBox(layout=w.Layout(flex_flow="row wrap", width="98%"))

    def _build_views(self, layer: int) -> None:
        """The figures (the grid's made when first shown) and the Output widgets that show all but the first."""
        self._line_names = lens_figures.variant_line_names(self.variants, self.targets)
        self.trajectory_fig = lens_figures.probability_figure(self._line_names, self.n_layers, layer)
        self.rank_fig = lens_figures.variant_rank_figure(self._line_names, self.vocab_size, layer)
        self.grid_figs: dict[str, go.Figure] = {}  # one per variant, made when first shown
        self.kl_fig = lens_figures.kl_figure({v: None for v in self.adapters}, layer)
        self.kl_fig.update_layout(height=lens_figures.FIG_HEIGHT)
        self.probe_fig = None if self.probe is None else lens_figures.probe_figure(self.probe, layer)
        self.kl_note = w.HTML()
        self.outputs = {name: w.Output() for name in (TAB_RANKS, TAB_GRID, TAB_KL, TAB_STEER, TAB_PROBE)}
        self.grid_box = self.outputs[TAB_GRID]
        self.kl_box = w.Box([self.kl_note])
        self._dirty: set[str] = set(self.outputs)  # tabs whose figures changed since they were last sent

    def _build_tabs(self, steer_box: w.VBox) -> None:
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

    def _add_css_classes(self) -> None:
        """The CSS classes the browser tests find the widgets by."""
        for widget, css in (
            (self.prompt_box, "wb-prompt"), (self.run_button, "wb-run"), (self.prompt_pick, "wb-prompt-pick"),
            (self.layer_slider, "wb-layer"), (self.position_pick, "wb-position"), (self.variant_pick, "wb-variant"),
            (self.readout_pick, "wb-readout"),
            (self.top_token, "wb-top-token"), (self.tables, "wb-tables"), (self.trajectory_fig, "wb-prob-fig"),
            (self.outputs[TAB_RANKS], "wb-rank-fig"), (self.grid_box, "wb-grid"), (self.outputs[TAB_KL], "wb-kl-fig"),
            (self.outputs[TAB_PROBE], "wb-probe-fig"), (self.kl_note, "wb-kl-note"), (self.tabs, "wb-views"),
            (self.steer_direction, "wb-steer-direction"), (self.steer_layer, "wb-steer-layer"),
            (self.steer_strength, "wb-steer-strength"), (self.steer_mode, "wb-steer-mode"),
            (self.steer_generate, "wb-steer-generate"), (self.steer_answers, "wb-steer-answers"),
            (self.steer_info, "wb-steer-info"), (self.outputs[TAB_STEER], "wb-steer-fig"),
        ):  # fmt: skip
            widget.add_class(css)

    def _observe_controls(self) -> None:
        self.prompt_box.observe(lambda _: self.read_prompts(), names="value")
        self.run_button.on_click(lambda _: self.read_prompts())
        self.prompt_pick.observe(lambda _: self._on_prompt(), names="value")
        self.layer_slider.observe(lambda _: self._guarded(self._refresh_layer), names="value")
        self.position_pick.observe(lambda _: self._guarded(self._refresh), names="value")
        self.variant_pick.observe(lambda _: self._guarded(self._refresh), names="value")
        self.readout_pick.observe(lambda _: self._guarded(self._refresh), names="value")
        self.tabs.observe(lambda _: self._guarded(self._on_tab), names="selected_index")
        for widget in (self.steer_direction, self.steer_layer, self.steer_strength):
            widget.observe(lambda _: self._guarded(self._draw_steering), names="value")
        self.steer_mode.observe(lambda _: self._guarded(self._draw_steering), names="value")
        self.steer_generate.on_click(lambda _: self.generate())

    def _layout(self) -> w.HBox:
        """The controls on the left, the tabs on the right."""
        controls = w.VBox(
            [
                self.prompt_box,
                self.run_button,
                self.prompt_pick,
                self.variant_pick,
                self.readout_pick,
                self.layer_slider,
                self.position_pick,
                self.top_token,
                self.tables,
            ],  # fmt: skip
            layout=w.Layout(width="30%", min_width="300px", padding="0 8px 0 0"),
        )
        controls.add_class("wb-controls")
        widget = w.HBox([controls, self.tabs], layout=w.Layout(width="100%", align_items="flex-start"))
        widget.add_class("wb-explorer")
        return widget

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
        """A variant's LensView (its model loaded on first use), reading through the readout picked."""
        if variant not in self.views:
            lm = load_model(self.spec, adapter=self.adapters[variant], **self.load_options)
            self.views[variant] = LensView(lm, self.targets)
        if self.views[variant].readout != self.readout_pick.value:
            self.views[variant].use(self.readout_pick.value, self.tuned)  # fitted on its first use
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
            values = {variant: trajectory[kind] for variant, trajectory in trajectories.items()}
            lens_figures.fill_lines(fig, self._line_names, values, shown)
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
                {"output_type": "display_data", "data": lens_figures.plotly_bundle(fig), "metadata": {}}
                for fig in self.figures(tab)
            )
        if tab == TAB_STEER and self.steering_current:
            self._steer_label()  # after the figure: the page shows the label once the figure is there

    def _draw_layer(self, start: float) -> None:
        layer, position = self.layer_slider.value, self.position_pick.value
        self.current = {v: self.view(v).at(self.prompt, layer, position, self.top_k) for v in self.shown}
        lined = {
            TAB_PROBS: self.trajectory_fig,
            TAB_RANKS: self.rank_fig,
            TAB_KL: self.kl_fig,
            TAB_PROBE: self.probe_fig,
        }
        for tab, fig in lined.items():
            if fig is not None and lens_figures.move_layer_line(fig, layer):
                self._dirty.add(tab)
        for fig in self.grid_figs.values():
            if lens_figures.move_cell_box(fig, layer, position):
                self._dirty.add(TAB_GRID)
        self._render_visible()
        self.tables.children = [w.HTML(lens_text.lens_table(v, r)) for v, r in self.current.items()]
        token = self.position_pick.label.split(": ", 1)[-1] if self.position_pick.label else ""
        self.top_token.value = lens_text.top_token_lines(self.current, self.prompt, token)  # after figure and table
        self.last_update_ms = 1000 * (time.perf_counter() - start)

    def _draw_grid(self) -> None:
        """The layer x position grid of top-1 lens tokens, one heatmap per variant shown."""
        tokens = self.views[BASE].tokens(self.prompt)  # the tokenization is the same for every variant
        self.grid_current = {v: self.view(v).grid(self.prompt) for v in self.shown}
        for variant, grid in self.grid_current.items():
            if variant not in self.grid_figs:
                self.grid_figs[variant] = lens_figures.empty_grid_figure()
            fig = self.grid_figs[variant]
            lens_figures.fill_grid(fig, grid, tokens, variant, self.layer_slider.value, self.position_pick.value)
        self._dirty.add(TAB_GRID)

    def _draw_kl(self) -> None:
        """KL(adapter || base) by layer for each adapter shown, or the note saying how to load one."""
        adapters = [v for v in self.shown if v != BASE]
        if not adapters:
            self.kl_current = {}
            self.kl_note.value = lens_text.kl_note(list(self.adapters), BOTH)
            self.kl_box.children = [self.kl_note]
            self._dirty.add(TAB_KL)
            return
        position = self.position_pick.value
        self.kl_current = {v: self.view(v).kl(self.prompt, position) for v in adapters}
        lens_figures.fill_kl(self.kl_fig, self.kl_current, self.prompt, position)
        self.kl_box.children = [self.outputs[TAB_KL]]
        self._dirty.add(TAB_KL)
