"""The layer explorer's steering tab: a direction (a class word's unembedding, a difference of class means, ...)
added after a layer at a strength relative to that layer's median residual norm, and the lens it gives at every layer;
one steered forward pass per change, never a generation (the greedy answers are behind their own button).
``SteeringPanel`` is a part of ``LayerExplorer``: it reads the explorer's prompt, views and figures."""

from __future__ import annotations

import html
import time

import ipywidgets as w
import torch

from ..causal.steering import Direction, direction_from, median_resid_norm
from ..core.generation import greedy_answers
from . import lens_figures
from . import lens_views as lv

STEER_MODES = ("probability", "rank")
TAB_STEER = "steering"


def _labelled_lists(labelled: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    prompts = [p for ps in labelled.values() for p in ps]
    return prompts, [c for c, ps in labelled.items() for _ in ps]


class SteeringPanel:
    """The steering tab of ``LayerExplorer`` (see the module doc)."""

    def _build_steering(self, layer: int, narrow: dict, max_new_tokens: int) -> w.VBox:
        """The steering tab's controls, answers, info line and figure (its Output widget is ``outputs[TAB_STEER]``)."""
        self.steer_update_ms: float | None = None  # the last steering view update (no generation in it)
        self.generations = 0  # greedy decodes run: only the answers button runs them
        self.steering_current: dict = {}  # the steered and unsteered lens last drawn
        self.answers_current: dict = {}  # the greedy answers last generated
        self._directions: dict[tuple, Direction] = {}
        self._norms: dict[tuple, float] = {}
        self._plain_answers: dict[tuple, str] = {}
        self._steer_key: tuple | None = None
        self._steer_drawn: tuple | None = None
        specs = lv.steering_specs(self.targets, list(self.labelled) if len(self.labelled) > 1 else None)
        self.steer_direction = w.Dropdown(options=specs, value=specs[0], description="direction", style=narrow)
        self.steer_layer = w.IntSlider(
            value=layer, min=0, max=self.n_layers - 1, description="after layer", continuous_update=False
        )
        self.steer_strength = w.FloatSlider(
            value=0.0,
            min=-3.0,
            max=3.0,
            step=0.25,
            description="strength",
            readout_format="+.2f",
            continuous_update=False,
            style=narrow,
            tooltip="a fraction of the layer's median residual norm over the prompts",
        )
        self.steer_mode = w.ToggleButtons(options=STEER_MODES, value=STEER_MODES[0], style={"button_width": "90px"})
        self.steer_generate = w.Button(
            description="greedy answers", tooltip=f"generate {max_new_tokens} tokens, unsteered and steered"
        )
        self.steer_answers = w.HTML()
        self.steer_info = w.HTML()
        self.steer_fig = lens_figures.steering_figure(
            {word: None for word in self.targets}, {}, STEER_MODES[0], layer, self.vocab_size, title=""
        )
        self.steer_fig.update_layout(height=lens_figures.FIG_HEIGHT - 130)
        return w.VBox(
            [
                w.HBox([self.steer_direction, self.steer_layer]),
                w.HBox([self.steer_strength, self.steer_mode]),
                w.HBox([self.steer_generate, self.steer_answers]),
                self.steer_info,
                self.outputs[TAB_STEER],
            ]
        )

    @property
    def steer_variant(self) -> str:
        """The model steered: the one the model menu shows (side by side: the base model)."""
        return self.shown[0]

    def steering_vector(self) -> tuple[torch.Tensor, float]:
        """(strength x the steered layer's median residual norm over the prompts x the unit direction, that norm)."""
        variant, spec, layer = self.steer_variant, self.steer_direction.value, self.steer_layer.value
        lm = self.view(variant).lm
        key = (variant, spec, layer if spec.startswith("mean-diff:") else None)
        if key not in self._directions:
            prompts, labels = _labelled_lists(self.labelled)
            self._directions[key] = direction_from(spec, lm, layer, prompts or None, labels or None)
        prompts = tuple(self.prompt_pick.options)
        if (variant, prompts, layer) not in self._norms:
            self._norms[variant, prompts, layer] = median_resid_norm(lm, list(prompts), layer)
        norm = self._norms[variant, prompts, layer]
        return self.steer_strength.value * norm * self._directions[key].unit, norm

    def steered_view(self) -> dict:
        """The lens at every layer of the prompt, at the chosen position, with the steering vector added and without
        (``lens_views.steered_lens``: one forward pass, the layers below the steered one from the cache, nothing
        generates; the last result is kept)."""
        variant, prompt, position = self.steer_variant, self.prompt, self.position_pick.value
        settings = (self.steer_direction.value, self.steer_layer.value, self.steer_strength.value)
        key = (variant, prompt, position, *settings, tuple(self.prompt_pick.options))
        if key != self._steer_key:
            start = time.perf_counter()
            view = self.view(variant)
            vector, norm = self.steering_vector()
            ref = view.lens(prompt, position)
            got = lv.steered_lens(view.lm, prompt, settings[1], vector, view.target_ids, position, ref)
            words = [t.word for t in view.targets]
            self.steering_current = {
                "variant": variant,
                "prompt": prompt,
                "position": position,
                "direction": settings[0],
                "layer": settings[1],
                "strength": settings[2],
                "median_norm": norm,
                "vector_norm": float(vector.norm()),
                "compute_ms": 1000 * (time.perf_counter() - start),
                **{
                    f"{prefix}{kind}": {word: result[kind][:, j].tolist() for j, word in enumerate(words)}
                    for prefix, result in (("", got), ("unsteered_", ref))
                    for kind in ("probs", "ranks")
                },
            }
            self._steer_key = key
            self.answers_current = {}
            self.steer_answers.value = "<i>press <b>greedy answers</b> to generate</i>"
        return self.steering_current

    def _draw_steering(self) -> None:
        """A steering control moved: the steered view, drawn (the slider path: one forward pass, no generation)."""
        start = time.perf_counter()
        self._update_steering()
        self._render_visible()
        self.steer_update_ms = 1000 * (time.perf_counter() - start)

    def _update_steering(self) -> None:
        s = self.steered_view()
        if self._steer_drawn == (self._steer_key, self.steer_mode.value):
            return  # the figure shows it already
        self._steer_drawn = (self._steer_key, self.steer_mode.value)
        lens_figures.fill_steering(self.steer_fig, s, self.targets, self.steer_mode.value, self.vocab_size)
        self._dirty.add(TAB_STEER)

    def _steer_label(self) -> None:
        s = self.steering_current
        output = ", ".join(
            f"{html.escape(word)} {s['probs'][word][-1]:.3g} ({s['unsteered_probs'][word][-1]:.3g})"
            for word in self.targets
        )
        self.steer_info.value = (
            f"<b>{html.escape(s['variant'])}</b> · <code>{html.escape(s['direction'])}</code> after layer {s['layer']} · "
            f"strength {s['strength']:+.2f} × median norm {s['median_norm']:.3g} = |v| {s['vector_norm']:.3g} · "
            f"lens at position {s['position']} · computed in {s['compute_ms']:.0f} ms<br>"
            f"p at the last layer, steered (unsteered): {output}"
        )

    def generate(self) -> dict:
        """The prompt's greedy answers, unsteered and steered (``max_new_tokens`` each): the only generation here."""
        variant, prompt = self.steer_variant, self.prompt
        self._draw_steering()
        lm = self.view(variant).lm
        if (variant, prompt) not in self._plain_answers:
            self._plain_answers[variant, prompt] = greedy_answers(lm, [prompt], self.max_new_tokens)[0]
            self.generations += 1
        vector, _ = self.steering_vector()
        steered = lv.steered_answers(lm, [prompt], self.steer_layer.value, vector, self.max_new_tokens)[0]
        self.generations += 1
        plain = self._plain_answers[variant, prompt]
        self.answers_current = {"unsteered": plain, "steered": steered, "changed": steered != plain}
        self.steer_answers.value = (
            f"unsteered <code>{html.escape(repr(plain))}</code> → steered <code>{html.escape(repr(steered))}</code> "
            f"<b>({'changed' if steered != plain else 'unchanged'})</b>"
        )
        return self.answers_current
