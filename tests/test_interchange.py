"""Subspace interchange on the tiny random Llama, against independent paths: strength 0 and a target interchanged
with itself change nothing (basis, placebo and random alike), a full-rank basis at the readout layer gives the
source's own lens readout there (core.lens on the captured source residual), the placebo moves each target exactly as
far as the basis does, the probe and mean-diff bases are the sklearn probe's and the class means' directions computed
by hand, and bad requests are one error each."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.causal import interchange
from workbench.core.activations import capture_last_token
from workbench.core.errors import WorkbenchError
from workbench.core.lens import lens_logits

SOURCES = ["7 * 8 = ", "3 * 4 = ", "6 * 2 = "]
TARGETS = ["7 + 8 = ", "12 + 5 = ", "9 + 1 = "]
PROMPTS = SOURCES + TARGETS + ["5 * 5 = ", "2 + 2 = "]
LABELS = ["multiply"] * 3 + ["add"] * 3 + ["multiply", "add"]
KINDS = ("basis", "placebo", "random")


def _run(lm, sources=SOURCES, targets=TARGETS, **kw):
    kw = {"layer": 1, "word": "multiply", "other": "add", "prompts": PROMPTS, "labels": LABELS, **kw}
    return interchange.subspace_interchange(lm, sources, targets, **kw)


def _lens_diff(lm, prompts, layer):
    with torch.no_grad():
        lens = lens_logits(lm, capture_last_token(lm, prompts, [layer])[:, 0])
    ids = [lm.tokenizer(w, add_special_tokens=False).input_ids[0] for w in ("multiply", "add")]
    return (lens[:, ids[0]] - lens[:, ids[1]]).numpy()


def test_strength_zero_changes_nothing(tiny_lm):
    result = _run(tiny_lm, strength=0.0, readout_layer=2)
    np.testing.assert_allclose([p["target_lens"] for p in result["pairs"]], _lens_diff(tiny_lm, TARGETS, 2), rtol=1e-5)
    for kind in KINDS:
        effect = result["effects"][kind]
        assert max(map(abs, effect["lens_effect"] + effect["output_effect"])) < 1e-6, kind
        assert max(effect["displacement"]) == 0.0
    moved = _run(tiny_lm, readout_layer=2)["effects"]
    assert max(map(abs, moved["basis"]["lens_effect"])) > 1e-4  # strength 1 does move it


def test_a_target_interchanged_with_itself_changes_nothing(tiny_lm):
    for basis in ("probe", "mean-diff"):
        result = _run(tiny_lm, sources=TARGETS, basis=basis)
        for kind in KINDS:
            effect = result["effects"][kind]
            assert max(map(abs, effect["lens_effect"] + effect["output_effect"])) < 1e-5, (basis, kind)


def test_a_full_rank_interchange_gives_the_sources_lens_readout(tiny_lm):
    layer = 2
    result = _run(tiny_lm, layer=layer, readout_layer=layer, basis=torch.eye(tiny_lm.d_model))
    source = _lens_diff(tiny_lm, SOURCES, layer)
    np.testing.assert_allclose(result["effects"]["basis"]["lens"], source, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose([p["source_lens"] for p in result["pairs"]], source, rtol=1e-5, atol=1e-6)
    effect = np.array(result["effects"]["basis"]["lens_effect"])
    np.testing.assert_allclose(effect, source - _lens_diff(tiny_lm, TARGETS, layer), rtol=1e-4, atol=1e-5)
    assert result["rank"] == tiny_lm.d_model
    assert result["effects"]["basis"]["lens_effect_mean"] == pytest.approx(effect.mean(), rel=1e-6)
    assert result["effects"]["basis"]["lens_effect_std"] == pytest.approx(effect.std(ddof=1), rel=1e-5)
    # one layer up, the lens reads what the later blocks make of it: the source's residual at the interchanged
    # position no longer fixes it alone
    above = _run(tiny_lm, layer=layer - 1, readout_layer=layer, basis=torch.eye(tiny_lm.d_model))
    assert not np.allclose(above["effects"]["basis"]["lens"], source, atol=1e-4)


def test_the_placebo_moves_each_target_as_far_as_the_basis(tiny_lm):
    result = _run(tiny_lm, basis="mean-diff")
    effects = result["effects"]
    np.testing.assert_allclose(effects["placebo"]["displacement"], effects["basis"]["displacement"], rtol=1e-5)
    assert min(effects["basis"]["displacement"]) > 0 and result["rank"] == 1
    assert effects["placebo"]["lens"] != effects["basis"]["lens"]


def test_probe_and_mean_diff_bases_are_the_hand_computed_directions(tiny_lm):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    layer = 1
    features = capture_last_token(tiny_lm, PROMPTS, [layer])[:, 0].double().numpy()
    scaler = StandardScaler().fit(features)
    coef = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(features), LABELS).coef_[0] / scaler.scale_
    probe, name = interchange.subspace_basis(tiny_lm, "probe", layer, PROMPTS, LABELS)
    assert name == "probe" and probe.shape == (tiny_lm.d_model, 1)
    assert abs(float(probe[:, 0] @ torch.tensor(coef / np.linalg.norm(coef), dtype=torch.float32))) == pytest.approx(
        1.0, abs=1e-5
    )
    labels = np.array(LABELS)
    diff = features[labels == "multiply"].mean(0) - features[labels == "add"].mean(0)
    mean_diff, _ = interchange.subspace_basis(tiny_lm, "mean-diff", layer, PROMPTS, LABELS)
    assert abs(
        float(mean_diff[:, 0] @ torch.tensor(diff / np.linalg.norm(diff), dtype=torch.float32))
    ) == pytest.approx(1.0, abs=1e-5)
    random, name = interchange.subspace_basis(tiny_lm, "random", layer, rank=3, seed=4)
    assert name == "random:4" and torch.allclose(random.T @ random, torch.eye(3), atol=1e-5)


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"sources": SOURCES[:2]}, "2 source and 3 target prompts"),
        ({"basis": "pca"}, "basis 'pca': use probe, mean-diff, random"),
        ({"prompts": None}, "needs labelled prompts"),
        ({"labels": ["add"] * len(PROMPTS)}, "at least 2 classes"),
        ({"basis": torch.ones(32, 2)}, "not orthonormal"),
        ({"basis": torch.eye(16)}, "d_model=32"),
        ({"basis": "random", "rank": 33}, "rank 33 is out of range"),
        ({"layer": 4}, "layer 4 is out of range"),
        ({"readout_layer": -1}, "--readout-layer -1 is out of range"),
        ({"other": "multiply"}, "both 'multiply'"),
    ],
)
def test_bad_requests_are_one_error_each(tiny_lm, kw, needle):
    with pytest.raises(WorkbenchError) as exc:
        _run(tiny_lm, **kw)
    assert needle in str(exc.value) and "\n" not in str(exc.value)
