"""The linear shortcut, the tuned lens and the offline text they are fitted on, on the tiny random Llama (4 layers,
d_model 32): an untrained tuned lens is the logit lens; the shortcut is numpy's least squares on the same residuals and
the identity at the last layer; training lowers every layer's held-out KL below the logit lens's; the saved lens reads
the same logits; the offline text is deterministic and leaves code and tables out."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from workbench.core.activations import capture_positions
from workbench.core.errors import WorkbenchError
from workbench.lenses.base import LogitLens
from workbench.lenses.corpus import is_prose, looks_like_code, offline_texts
from workbench.lenses.shortcut import cache_residuals, fit_shortcut
from workbench.lenses.tuned import TunedLens, kl_bits, train_tuned_lens

PIECES = ["add", "sub", "tract", "multiply", "divide", "7", "12", "*", "+", "=", "-", "/", "A", "B", ".", ","]


def texts(n: int, seed: int) -> list[str]:
    """Short strings of the tiny tokenizer's words, digits and operators (30-50 tokens each: its context is 64)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(PIECES) for _ in range(rng.randint(20, 30))) for _ in range(n)]


@pytest.fixture(scope="module")
def caches(tiny_lm):
    """Residuals at every layer: ~400 train positions and ~250 held-out ones."""
    return cache_residuals(tiny_lm, texts(16, 0), max_tokens=400), cache_residuals(tiny_lm, texts(8, 1), max_tokens=250)


def test_the_cache_holds_capture_positions_states_without_the_first_token(tiny_lm, caches):
    train, _ = caches
    assert train.n == 400 and train.layers == [0, 1, 2, 3] and train.resid.shape == (4, 400, tiny_lm.d_model)
    first = capture_positions(tiny_lm, texts(1, 0)[0])  # [layer, pos, d]
    assert torch.equal(train.resid[:, : first.shape[1] - 1], first[:, 1:])
    assert torch.equal(train.final, train.resid[-1])
    some = cache_residuals(tiny_lm, texts(2, 0), layers=[1], max_tokens=15)
    assert (
        some.layers == [1] and torch.equal(some.final, first[-1, 1:16]) and torch.equal(some.resid[0], first[1, 1:16])
    )


def test_an_untrained_tuned_lens_is_the_logit_lens(tiny_lm, caches):
    train, _ = caches
    lens, logit = TunedLens(tiny_lm, train.layers), LogitLens(tiny_lm)
    for slot, layer in enumerate(train.layers):
        resid = train.resid[slot, :64]
        assert torch.equal(lens.logits(layer, resid), logit.logits(layer, resid))


def test_the_shortcut_is_numpys_least_squares_and_the_identity_at_the_last_layer(tiny_lm, caches):
    train, _ = caches
    shortcut = fit_shortcut(tiny_lm, cache=train)
    y = train.final.double().numpy()
    for slot in range(len(train.layers)):
        x = train.resid[slot].double().numpy()
        expected = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)[0]
        np.testing.assert_allclose(shortcut.maps[slot].numpy(), expected, atol=1e-8)
    last = tiny_lm.n_layers - 1
    torch.testing.assert_close(shortcut.maps[-1], torch.eye(tiny_lm.d_model + 1)[:, :-1].double(), atol=1e-9, rtol=0)
    resid = train.resid[-1, :64]
    torch.testing.assert_close(shortcut.logits(last, resid), LogitLens(tiny_lm).logits(last, resid), atol=1e-5, rtol=0)
    assert shortcut.provenance()["tokens"] == 400 and shortcut.provenance()["fit_r2"][-1] == pytest.approx(1.0)
    # a tuned lens started at the shortcut reads what the shortcut reads
    started = TunedLens.from_shortcut(shortcut)
    for layer in train.layers:
        torch.testing.assert_close(started.logits(layer, resid), shortcut.logits(layer, resid), atol=1e-4, rtol=1e-4)


def test_training_lowers_every_layers_heldout_kl_below_the_logit_lens(tiny_lm, caches):
    train, heldout = caches
    lens = train_tuned_lens(tiny_lm, cache=train, steps=60, batch_size=32, lr=2e-2, corpus="tiny strings")
    table = lens.kl_bits_per_layer(heldout)
    assert table["layers"] == [0, 1, 2, 3]
    for layer, logit, tuned in zip(table["layers"][:-1], table["logit"], table["tuned"]):
        assert tuned < 0.8 * logit, f"layer {layer}: tuned {tuned} bits, logit lens {logit} bits"
    assert table["logit"][-1] == pytest.approx(0.0, abs=1e-6) and table["tuned"][-1] < 1e-3  # the last layer: identity
    info = lens.provenance()
    assert info["tokens_trained"] == 60 * 32 and info["tokens"] == 400 and info["corpus"] == "tiny strings"
    assert info["heldout_kl_bits"]["tuned"] == table["tuned"] and len(info["train_kl_bits"]) == 4
    # the generic measure agrees, and reads the shortcut too
    both = kl_bits(tiny_lm, {"tuned": lens, "shortcut": fit_shortcut(tiny_lm, cache=train)}, heldout)
    assert both["tuned"] == table["tuned"] and all(s < lo for s, lo in zip(both["shortcut"], table["logit"][:-1]))


@pytest.mark.slow
def test_on_a_model_whose_blocks_are_the_identity_training_recovers_the_identity(tiny_dir):
    """Every block's attention and MLP outputs zeroed: each layer's state is the last one's, so the logit lens is exact
    (KL 0) and the right translator is the identity (up to what the final norm and unembedding cannot see). Started
    away from it, training brings the readout back to the logit lens's."""
    from workbench.core.models import load_model

    lm = load_model(str(tiny_dir), device="cpu")
    with torch.no_grad():
        for block in lm.hf_model.model.layers:
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
        lm.hf_model.lm_head.weight.mul_(30)  # sharper distributions than a random head's: the KL sees the translator
    train, heldout = cache_residuals(lm, texts(16, 0), max_tokens=400), cache_residuals(lm, texts(8, 1), max_tokens=250)
    assert torch.equal(train.resid[0], train.final)  # the blocks add nothing
    lens = TunedLens(lm, [0, 1, 2])
    torch.manual_seed(0)
    with torch.no_grad():
        for translator in lens.translators:
            translator.weight.normal_(0, 1.0)
            translator.bias.normal_(0, 1.0)

    def agreement() -> float:  # the share of held-out positions whose top-1 token is the logit lens's (exact here)
        x = heldout.resid[0]
        return float((lens.logits(0, x).argmax(-1) == LogitLens(lm).logits(0, x).argmax(-1)).float().mean())

    start = kl_bits(lm, {"tuned": lens, "logit": LogitLens(lm)}, heldout, [0, 1, 2])
    assert agreement() < 0.5
    assert start["logit"] == pytest.approx([0, 0, 0], abs=1e-6) and min(start["tuned"]) > 0.5
    lens.train(train, steps=200, batch_size=32, lr=1e-2)
    end = kl_bits(lm, {"tuned": lens}, heldout, [0, 1, 2])["tuned"]
    assert all(e < 0.05 * s for e, s in zip(end, start["tuned"])), (start["tuned"], end)
    assert agreement() > 0.95


def test_save_and_load_round_trip_logits_and_provenance(tiny_lm, caches, tmp_path):
    train, _ = caches
    lens = train_tuned_lens(tiny_lm, cache=train, layers=[1, 2], steps=3, batch_size=16, init="shortcut")
    folder = lens.save(tmp_path / "lens")
    back = TunedLens.load(folder, tiny_lm)
    assert back.layers == [1, 2]
    for layer in (1, 2):
        assert torch.equal(back.logits(layer, train.resid[layer]), lens.logits(layer, train.resid[layer]))
    assert back.provenance() == json.loads(json.dumps(lens.provenance())) | {
        "model": tiny_lm.model_id,
        "layers": [1, 2],
        "d_model": tiny_lm.d_model,
    }
    assert back.provenance()["init"] == "shortcut" and back.provenance()["steps"] == 3
    info = json.loads((folder / "provenance.json").read_text())
    (folder / "provenance.json").write_text(json.dumps({**info, "model": "someone/else"}))
    with pytest.raises(WorkbenchError, match="someone/else"):
        TunedLens.load(folder, tiny_lm)


PROSE = (
    "The lens reads each layer of the model through the same final norm and unembedding that the model uses for its "
    "own output. When the translator is trained, it learns a small change of basis for each layer, and the readout "
    "becomes much closer to the final distribution of the model than the plain logit lens is."
)
DOC = f"""# Title

{PROSE}

```python
import torch
def f(x):
    return x + 1
```

    for i in range(10):
        print(i)

| column | other |
| ------ | ----- |
| 1      | 2     |

>>> from this import that
>>> that(1, 2)

$ pip install something --upgrade

{PROSE.replace("lens", "probe")}

key = value; other = [1, 2, 3]; {{"a": 1}}
"""


def test_offline_texts_are_deterministic_prose_split_by_file(tmp_path):
    for i in range(6):
        (tmp_path / f"pkg{i}").mkdir()
        (tmp_path / f"pkg{i}" / "README.md").write_text(DOC.replace("model", f"model {'abcdef'[i]}"))
    (tmp_path / "pkg0" / "data.txt").write_text("\n".join(f"{i} {i * 2} {i * 3}" for i in range(200)))
    (tmp_path / "pkg0" / "METADATA").write_text(f"Name: pkg0\nVersion: 1.0\n\n{PROSE.replace('layer', 'stage')}\n")
    (tmp_path / "pkg0" / "code.py").write_text(f'"""{PROSE}"""\n')  # not a text file: left out
    train = offline_texts(seed=3, root=tmp_path)
    assert train == offline_texts(seed=3, root=tmp_path) and train.description.startswith("offline prose:")
    held = offline_texts(seed=3, root=tmp_path, split="heldout", heldout_share=0.5)
    train_half = offline_texts(seed=3, root=tmp_path, heldout_share=0.5)
    assert held and train_half and not set(held) & set(train_half)
    everything = offline_texts(seed=3, root=tmp_path, heldout_share=0.0)
    assert len(everything) == 13 and sorted(offline_texts(seed=4, root=tmp_path, heldout_share=0.0)) == sorted(
        everything
    )
    for chunk in everything:
        assert 200 <= len(chunk) <= 2000 and is_prose(chunk.replace("\n\n", " "))
        for bad in ("import", "print(", "| column", ">>>", "pip install", "key = value", "100 200 300"):
            assert bad not in chunk, (bad, chunk)
    assert any("stage" in chunk for chunk in everything)  # METADATA's description is read
    assert len(offline_texts(max_chars=500, seed=3, root=tmp_path, heldout_share=0.0)) == 1  # cut at max_chars
    kept = offline_texts(seed=3, root=tmp_path, exclude_code=False, heldout_share=0.0)
    assert any("print(" in chunk for chunk in kept)


def test_code_and_prose_recognisers():
    assert looks_like_code(["    x = f(1)", "text"]) and looks_like_code(["| a | b |"]) and looks_like_code([">>> 1"])
    assert looks_like_code(["Heading", "======="]) and not looks_like_code(PROSE.split(". "))
    assert is_prose(PROSE) and not is_prose("x = [1, 2, 3]; y = {'a': 1}; " * 10)
    assert not is_prose("numpy scipy torch pandas matplotlib seaborn sklearn " * 5)
