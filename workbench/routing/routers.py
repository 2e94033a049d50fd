"""Routers decide which expert answers a prompt, and with which operation (None: the model answers).

- ``regex``: the original tool's ``can_handle`` pattern on the prompt text (symbols only).
- ``direction``: the original tool's dense-model gate, a difference of class means at one layer with its threshold at
  the midpoint of the two mean projections; the operation is the nearest operation mean at that layer.
- ``probe``: a linear probe (StandardScaler + logistic regression, as ``core.probes``) over the four operations and
  ``none`` at the classifier layer.
- ``lens``: a trained dual-reward adapter's vocabulary-aligned classifier, argmax of the logit lens over the class
  words at the classifier layer; below ``threshold`` (its full-vocabulary probability) the model answers.
- ``neural``: the whole model writes the decision word after a few-shot instruction (greedy, KV cache).

Direction, probe and lens read the residual stream after block ``layer`` at the last prompt token and stop the forward
there (``stop_at_layer``): blocks above it never run. Fitted routers (direction, probe) save to a small JSON file that
names the model, layer and task they were fitted on; loading it on another model is refused.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.activations import capture_last_token
from ..core.errors import WorkbenchError
from ..core.generation import greedy_tokens
from ..core.guide import OPERATIONS
from ..core.layers import check_layers
from ..core.lens import lens_log_probs, resolve_targets
from ..core.models import LoadedModel
from ..core.results import write_json
from .prompts import NONE, RouteItem

ROUTERS = ("regex", "direction", "probe", "lens", "neural")
FITTED = ("direction", "probe")
LABELS = (*OPERATIONS, NONE)
ORIGINAL_REGEX = r"\d+\s*[+\-*/]\s*\d+\s*=?\s*$"  # the original tool's calculator `can_handle`
_OPERATOR_TO_OPERATION = {"*": "multiply", "+": "add", "-": "subtract", "/": "divide"}
LENS_THRESHOLD = 0.5  # written before any measurement: route when the lens gives the class word at least even odds
ROUTER_SCHEMA = 1

FEW_SHOT = (
    "Decide which calculator operation a request needs: add, subtract, multiply, divide, or none.\n"
    "Request: 61 + 75 = \nOperation: add\n"
    "Request: What is ninety times four?\nOperation: multiply\n"
    "Request: The capital of Spain is\nOperation: none\n"
    "Request: 140 minus 3\nOperation: subtract\n"
    "Request: My house has 3 doors.\nOperation: none\n"
    "Request: Compute 96 divided by 16.\nOperation: divide\n"
    "Request: {prompt}\nOperation:"
)  # operands outside the evaluation set's ranges, so no few-shot line is an evaluation prompt


@dataclass
class Decision:
    operation: str | None  # one of OPERATIONS, or None: the model answers
    confidence: float  # in [0, 1]: the router's probability of its decision (regex: 1)
    blocks_run: int  # transformer blocks this decision ran (0: the text alone)
    detail: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return self.operation or NONE


class RegexRouter:
    name = "regex"

    def __init__(self, pattern: str = ORIGINAL_REGEX):
        self.pattern = re.compile(pattern)

    def decide(self, lm: LoadedModel | None, prompt: str) -> Decision:
        match = self.pattern.search(prompt)
        operator = re.search(r"[+\-*/]", match.group()) if match else None
        return Decision(_OPERATOR_TO_OPERATION[operator.group()] if operator else None, 1.0, 0)

    def describe(self) -> dict:
        return {"router": self.name, "pattern": self.pattern.pattern}


def early_state(lm: LoadedModel, prompt: str, layer: int) -> torch.Tensor:
    """The residual stream after block ``layer`` at the prompt's last token, [d_model] float32; the forward stops
    there."""
    return capture_last_token(lm, [prompt], [layer])[0, 0]


class _LayerRouter:
    """A router that reads one layer's residual stream: its model, layer and task, checked against the model."""

    name = ""

    def __init__(self, layer: int, model: str, d_model: int, n_layers: int, task: str = "arithmetic", fitted=None):
        self.layer, self.model, self.d_model, self.n_layers, self.task = layer, model, d_model, n_layers, task
        self.fitted = fitted or {}

    def check(self, lm: LoadedModel) -> None:
        if (lm.model_id, lm.d_model, lm.n_layers) != (self.model, self.d_model, self.n_layers):
            raise WorkbenchError(
                f"the {self.name} router was fitted on {self.model} ({self.n_layers} layers, d_model {self.d_model}), "
                f"not on {lm.model_id} ({lm.n_layers} layers, d_model {lm.d_model}): fit it again on this model"
            )
        if not 0 <= self.layer < lm.n_layers:
            raise WorkbenchError(f"router layer {self.layer} is out of range for {lm.n_layers} layers: refit it")
        fitted_on = self.fitted.get("adapter")
        if (fitted_on is None) != (lm.adapter is None):
            warnings.warn(
                f"the {self.name} router was fitted {'with adapter ' + fitted_on if fitted_on else 'on the base model'}"
                f", and the model now has {'adapter ' + lm.adapter if lm.adapter else 'none'}: its features differ",
                stacklevel=2,
            )

    def describe(self) -> dict:
        return {
            "router": self.name,
            "layer": self.layer,
            "model": self.model,
            "d_model": self.d_model,
            "n_layers": self.n_layers,
            "task": self.task,
            **self.fitted,
        }

    def save(self, path: str | Path) -> Path:
        return write_json(path, {"schema_version": ROUTER_SCHEMA, **self.describe(), "weights": self.weights()})


class DirectionRouter(_LayerRouter):
    name = "direction"

    def __init__(self, direction, threshold: float, scale: float, operations: list[str], operation_means, **where):
        super().__init__(**where)
        self.operations = list(operations)  # the operations seen in training, in the order of operation_means
        self.direction = torch.as_tensor(direction, dtype=torch.float32)  # [d_model]: mean(arithmetic) - mean(none)
        self.threshold, self.scale = float(threshold), float(scale)  # midpoint; half the gap of the mean projections
        self.operation_means = torch.as_tensor(operation_means, dtype=torch.float32)  # [operation, d_model]

    @classmethod
    def fit(cls, features: np.ndarray, labels: list[str], **where) -> DirectionRouter:
        x = torch.as_tensor(features, dtype=torch.float32)
        positive = torch.tensor([label != NONE for label in labels])
        mean_pos, mean_neg = x[positive].mean(0), x[~positive].mean(0)
        direction = mean_pos - mean_neg
        high, low = float(mean_pos @ direction), float(mean_neg @ direction)
        operations = [op for op in OPERATIONS if op in labels]
        means = torch.stack([x[torch.tensor([label == op for label in labels])].mean(0) for op in operations])
        return cls(direction, (high + low) / 2, (high - low) / 2, operations, means, **where)

    def classify(self, state: torch.Tensor) -> Decision:
        margin = (float(state @ self.direction) - self.threshold) / self.scale
        confidence = float(torch.sigmoid(torch.tensor(abs(margin) * 4.0)))  # margin 1 = a class mean: p 0.98
        if margin <= 0:
            return Decision(None, confidence, self.layer + 1, {"margin": margin})
        nearest = int(torch.cdist(state[None], self.operation_means)[0].argmin())
        return Decision(self.operations[nearest], confidence, self.layer + 1, {"margin": margin})

    def decide(self, lm: LoadedModel, prompt: str) -> Decision:
        return self.classify(early_state(lm, prompt, self.layer))

    def weights(self) -> dict:
        return {
            "direction": self.direction.tolist(),
            "threshold": self.threshold,
            "scale": self.scale,
            "operations": self.operations,
            "operation_means": self.operation_means.tolist(),
        }


class ProbeRouter(_LayerRouter):
    name = "probe"

    def __init__(self, classes: list[str], mean, std, coef, intercept, **where):
        super().__init__(**where)
        self.classes = list(classes)
        self.mean, self.std = torch.as_tensor(mean, dtype=torch.float32), torch.as_tensor(std, dtype=torch.float32)
        self.coef = torch.as_tensor(coef, dtype=torch.float32)  # [class, d_model]
        self.intercept = torch.as_tensor(intercept, dtype=torch.float32)  # [class]

    @classmethod
    def fit(cls, features: np.ndarray, labels: list[str], seed: int = 0, **where) -> ProbeRouter:
        from ..core.probes import make_probe

        pipeline = make_probe(seed).fit(np.asarray(features, dtype=np.float64), np.asarray(labels))
        scaler, logistic = pipeline[0], pipeline[-1]
        coef, intercept = logistic.coef_, logistic.intercept_
        if coef.shape[0] == 1:  # two classes: scikit-learn keeps one row, the second class's logit
            coef, intercept = np.concatenate([-coef, coef]) / 2, np.concatenate([-intercept, intercept]) / 2
        return cls([str(c) for c in logistic.classes_], scaler.mean_, scaler.scale_, coef, intercept, **where)

    def probabilities(self, state: torch.Tensor) -> torch.Tensor:
        return torch.softmax(((state - self.mean) / self.std) @ self.coef.T + self.intercept, -1)

    def classify(self, state: torch.Tensor) -> Decision:
        probs = self.probabilities(state)
        best = int(probs.argmax())
        label = self.classes[best]
        detail = {"probabilities": {c: round(float(p), 4) for c, p in zip(self.classes, probs)}}
        return Decision(None if label == NONE else label, float(probs[best]), self.layer + 1, detail)

    def decide(self, lm: LoadedModel, prompt: str) -> Decision:
        return self.classify(early_state(lm, prompt, self.layer))

    def weights(self) -> dict:
        return {
            "classes": self.classes,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }


class LensRouter:
    """The dual-reward classifier read through the model's own final norm and unembedding at ``layer``."""

    name = "lens"

    def __init__(self, lm: LoadedModel, layer: int, class_words: dict[str, str], threshold: float = LENS_THRESHOLD):
        check_layers([layer], lm.n_layers, "--layer")
        self.layer, self.threshold, self.class_words = layer, float(threshold), dict(class_words)
        self.targets = resolve_targets(lm, list(class_words.values()))
        self.token_ids = torch.tensor([t.token_id for t in self.targets])
        self.adapter = lm.adapter

    @torch.inference_mode()
    def classify(self, lm: LoadedModel, state: torch.Tensor) -> Decision:
        log_probs = lens_log_probs(lm, state[None].to(lm.device))[0].float().cpu()
        probs = log_probs[self.token_ids].exp()
        best = int(probs.argmax())
        operation = list(self.class_words)[best]
        detail = {"probabilities": {op: float(f"{float(p):.4g}") for op, p in zip(self.class_words, probs)}}
        chosen = operation if float(probs[best]) >= self.threshold else None
        return Decision(chosen, float(probs[best]), self.layer + 1, detail)

    def decide(self, lm: LoadedModel, prompt: str) -> Decision:
        return self.classify(lm, early_state(lm, prompt, self.layer))

    def describe(self) -> dict:
        details = {"threshold": self.threshold, "class_words": self.class_words, "adapter": self.adapter}
        return {"router": self.name, "layer": self.layer, **details}


class NeuralRouter:
    """The whole model writes its decision: the first word it generates after ``FEW_SHOT`` (greedy, KV cache)."""

    name = "neural"

    def __init__(self, template: str = FEW_SHOT, max_new_tokens: int = 4):
        if "{prompt}" not in template:
            raise WorkbenchError("the neural router's template has no {prompt}: add it where the request goes")
        self.template, self.max_new_tokens = template, max_new_tokens

    def decide(self, lm: LoadedModel, prompt: str) -> Decision:
        text = self.template.replace("{prompt}", prompt)
        tokens = greedy_tokens(lm, [text], self.max_new_tokens, until=lambda t: "\n" in t.lstrip())[0]
        written = lm.tokenizer.decode(tokens, skip_special_tokens=True)
        word = (written.strip().split() or [""])[0].strip(".,:;!").lower()
        operation = word if word in OPERATIONS else None
        forwards = max(1, len(tokens))  # the prompt's forward gives the first token, one decode step each next
        return Decision(operation, 1.0, lm.n_layers * forwards, {"written": written, "new_tokens": len(tokens)})

    def describe(self) -> dict:
        return {"router": self.name, "template": self.template, "max_new_tokens": self.max_new_tokens}


def layer_features(lm: LoadedModel, prompts: list[str], layer: int) -> np.ndarray:
    """[prompt, d_model]: the residual stream after block ``layer`` at each prompt's last token (batched)."""
    return capture_last_token(lm, prompts, [layer])[:, 0].numpy()


def fit_router(kind: str, lm: LoadedModel, items: list[RouteItem], layer: int | None = None, seed: int = 0):
    """A direction or probe router fitted on ``items`` at ``layer`` (default: the classifier layer)."""
    if kind not in FITTED:
        raise WorkbenchError(f"router {kind!r} is not fitted: only {', '.join(FITTED)} are")
    layer = lm.classifier_layer if layer is None else layer
    check_layers([layer], lm.n_layers, "--layer")
    features = layer_features(lm, [item.prompt for item in items], layer)
    labels = [item.label for item in items]
    counts = {label: labels.count(label) for label in LABELS}
    where = dict(layer=layer, model=lm.model_id, d_model=lm.d_model, n_layers=lm.n_layers)
    where["fitted"] = {"seed": seed, "training_counts": counts, "adapter": lm.adapter}
    if kind == "direction":
        return DirectionRouter.fit(features, labels, **where)
    return ProbeRouter.fit(features, labels, seed=seed, **where)


def load_router(path: str | Path, lm: LoadedModel | None = None):
    """A fitted router from its JSON file; with ``lm``, refused unless it was fitted on that model."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        kind, weights = doc["router"], doc["weights"]
        where = {key: doc[key] for key in ("layer", "model", "d_model", "n_layers", "task")}
        fitted = {key: doc[key] for key in ("seed", "training_counts", "adapter") if key in doc}
        cls = {"direction": DirectionRouter, "probe": ProbeRouter}[kind]
        router = cls(**weights, **where, fitted=fitted)
    except FileNotFoundError:
        raise WorkbenchError(
            f"router file {str(path)!r} does not exist: fit one with `workbench route --fit`"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WorkbenchError(
            f"router file {str(path)!r} is not a fitted router ({type(exc).__name__}: {str(exc)[:80]}): fit it again "
            "with `workbench route --router probe --fit FILE`"
        ) from None
    if lm is not None:
        router.check(lm)
    return router


def build_router(
    kind: str,
    lm: LoadedModel,
    router_file: str | Path | None = None,
    layer: int | None = None,
    threshold: float = LENS_THRESHOLD,
    seed: int = 0,
    class_words: dict[str, str] | None = None,
):
    """The router ``route`` uses: a fitted one loaded from ``router_file`` (checked against the model) or fitted now on
    the built-in training prompts; lens over ``class_words`` (default: the arithmetic task's); regex; neural."""
    from .prompts import training_items

    if kind not in ROUTERS:
        raise WorkbenchError(f"unknown router {kind!r}: choose from {', '.join(ROUTERS)}")
    if kind in FITTED:
        if router_file is not None:
            router = load_router(router_file, lm)
            if router.name != kind:
                raise WorkbenchError(f"router file {str(router_file)!r} holds a {router.name} router, not {kind}")
            if layer is not None and layer != router.layer:
                raise WorkbenchError(
                    f"router file {str(router_file)!r} was fitted at layer {router.layer}, not --layer {layer}: "
                    "drop --layer or fit it again there"
                )
            return router
        return fit_router(kind, lm, training_items(seed=seed), layer, seed)
    if router_file is not None:
        raise WorkbenchError(f"--router-file is for fitted routers ({', '.join(FITTED)}), not {kind}")
    if kind == "lens":
        if class_words is None:
            from ..tasks.spec import load_task

            class_words = load_task("arithmetic").classes
        return LensRouter(lm, lm.classifier_layer if layer is None else layer, class_words, threshold)
    return RegexRouter() if kind == "regex" else NeuralRouter()
