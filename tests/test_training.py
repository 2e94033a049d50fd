"""Training on the tiny random Llama: masking, freezing, the dual-reward gradient path, adapters, resume."""

import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from workbench.core.arithmetic import generate_arithmetic
from workbench.core.data import write_jsonl
from workbench.core.errors import WorkbenchError
from workbench.core.layers import layer_of
from workbench.training.config import build_config
from workbench.training.loop import prepare_model, train, trainable_parameters
from workbench.training.losses import IGNORE, answer_loss, encode_records, sft_batch, sft_losses


def cfg_for(tiny_dir, data_file, out, **kw):
    base = {
        "model": str(tiny_dir),
        "data": str(data_file),
        "eval_data": str(data_file.with_name("eval.jsonl")),
        "output": str(out),
        "max_steps": 6,
        "batch_size": 4,
        "learning_rate": 5e-3,
        "seed": 0,
    }
    return build_config({**base, **kw})


def test_mask_prompt_hand_computed(tiny_lm):
    (ex,) = encode_records(tiny_lm, [{"prompt": "7 * 8 = ", "response": "56"}], mask_prompt=True)
    tokens = tiny_lm.tokenizer.convert_ids_to_tokens(ex.ids)
    assert tokens == ["7", " *", " ", "8", " =", " ", "5", "6", "</s>"]
    assert ex.labels == [IGNORE] * 6 + ex.ids[6:] and ex.prompt_len == 6
    batch = sft_batch([ex], 1, "cpu")
    with torch.no_grad():
        logits = tiny_lm.hf_model(batch.input_ids).logits[0]
    # by hand: the last prompt token (position 5) predicts '5', position 6 predicts '6', position 7 predicts EOS
    by_hand = torch.stack([F.cross_entropy(logits[p], torch.tensor(ex.ids[p + 1])) for p in (5, 6, 7)]).mean()
    assert answer_loss(logits[None], batch.labels).item() == pytest.approx(by_hand.item(), rel=1e-6)
    (unmasked,) = encode_records(tiny_lm, [{"prompt": "7 * 8 = ", "response": "56"}], mask_prompt=False)
    assert unmasked.labels == unmasked.ids


def test_freezing_and_dual_reward_gradient_path(tiny_dir, data_file, tmp_path):
    cfg = cfg_for(tiny_dir, data_file, tmp_path, freeze_layers="0", lora_targets="v_proj,o_proj")
    lm = prepare_model(cfg, "cpu")
    lora = {n: p for n, p in lm.hf_model.named_parameters() if "lora_" in n}
    assert all(not p.requires_grad for n, p in lora.items() if layer_of(n) == 0)
    assert all(p.requires_grad for n, p in lora.items() if layer_of(n) != 0)
    assert all(n in lora for n in trainable_parameters(lm))  # base weights stay frozen under LoRA
    ex = encode_records(
        lm, generate_arithmetic(4, 1), False, target_ids={"multiply": 5, "add": 6, "subtract": 7, "divide": 8}
    )
    batch = sft_batch(ex, 1, "cpu")
    lm.bridge.train()
    seen = {}
    lm.bridge.blocks[0].register_forward_hook(lambda m, i, o: seen.setdefault("frozen_out", o))
    losses = sft_losses(lm, batch, layer=1, weight=1.0)  # classifier CE only, read at layer 1
    out0 = seen["frozen_out"][0] if isinstance(seen["frozen_out"], tuple) else seen["frozen_out"]
    assert out0.grad_fn is None  # the frozen prefix built no autograd graph
    losses["loss"].backward()
    for n, p in lora.items():
        layer = layer_of(n)
        if layer == 0:
            assert p.grad is None
        elif layer == 1 and "lora_B" in n:  # below the read-out: the gradient reaches it through the hook
            assert p.grad is not None and p.grad.abs().sum() > 0, n  # (lora_A's is exactly 0 while B is 0)
        else:  # above the read-out layer the classifier loss cannot reach
            assert p.grad is None or p.grad.abs().sum() == 0, n


def test_train_writes_adapter_log_metrics_and_frozen_layers_do_not_move(tiny_dir, data_file, tmp_path):
    out = tmp_path / "run"
    metrics = train(
        cfg_for(tiny_dir, data_file, out, freeze_layers="0-1", intermediate_loss={"enabled": True, "weight": 0.4}),
        device="cpu",
        progress=False,
    )
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    rows = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert {"loss", "classifier_loss", "answer_loss", "lr", "seconds", "grad_norm"} <= set(rows[0])
    assert metrics["layer"] == 2 and metrics["before"]["lens"]["prompts"] == 16
    from safetensors.torch import load_file

    saved = load_file(out / "adapter_model.safetensors")
    frozen = {k: v for k, v in saved.items() if layer_of(k) in (0, 1) and "lora_B" in k}
    assert frozen and all(v.abs().sum() == 0 for v in frozen.values())  # LoRA B starts at zero and never moved
    assert any(v.abs().sum() > 0 for k, v in saved.items() if layer_of(k) in (2, 3) and "lora_B" in k)


LENS_IN_FRESH_PROCESS = """
import json, sys
from workbench.core.models import load_model
from workbench.training.evaluation import lens_metrics
from workbench.core.data import read_jsonl
lm = load_model(sys.argv[1], device="cpu", adapter=sys.argv[2])
recs = read_jsonl(sys.argv[3])
m = lens_metrics(lm, recs, {"multiply": "multiply", "add": "add", "subtract": "subtract", "divide": "divide"}, 2)
print(json.dumps(m["mean_correct_target_prob"]))
"""


@pytest.mark.slow
def test_adapter_reloads_in_a_fresh_process_with_the_same_lens_numbers(tiny_dir, data_file, tmp_path):
    out = tmp_path / "run"
    metrics = train(
        cfg_for(tiny_dir, data_file, out, intermediate_loss={"enabled": True, "weight": 0.5}),
        device="cpu",
        progress=False,
    )
    trained = metrics["after"]["lens"]["mean_correct_target_prob"]
    assert trained != metrics["before"]["lens"]["mean_correct_target_prob"]
    proc = subprocess.run(
        [sys.executable, "-c", LENS_IN_FRESH_PROCESS, str(tiny_dir), str(out), str(data_file.with_name("eval.jsonl"))],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == pytest.approx(trained, rel=1e-6)
    # and plain peft loads it onto the HF model
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    peft = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), str(out))
    from safetensors.torch import load_file

    saved = load_file(out / "adapter_model.safetensors")
    assert not any("_original_component" in k for k in saved)
    loaded = {n: p for n, p in peft.named_parameters() if "lora_B" in n}
    assert loaded and any(p.abs().sum() > 0 for p in loaded.values())  # peft found the weights, not zeros


@pytest.mark.slow
def test_resume_after_a_crash_equals_an_uninterrupted_run(tiny_dir, data_file, tmp_path, monkeypatch):
    kw = dict(max_steps=6, save_every=2, intermediate_loss={"enabled": True})
    train(cfg_for(tiny_dir, data_file, tmp_path / "straight", **kw), device="cpu", progress=False)

    real_step, calls = torch.optim.AdamW.step, {"n": 0}

    def crash_on_fifth(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # killed during step 5; the last checkpoint is step 4
        return real_step(self, *a, **k)

    monkeypatch.setattr(torch.optim.AdamW, "step", crash_on_fifth)
    with pytest.raises(KeyboardInterrupt):
        train(cfg_for(tiny_dir, data_file, tmp_path / "crashed", **kw), device="cpu", progress=False)
    monkeypatch.setattr(torch.optim.AdamW, "step", real_step)
    assert sorted(p.name for p in (tmp_path / "crashed" / "checkpoints").iterdir()) == ["step-000002", "step-000004"]
    train(cfg_for(tiny_dir, data_file, tmp_path / "crashed", resume=True, **kw), device="cpu", progress=False)

    from safetensors.torch import load_file

    a = load_file(tmp_path / "straight" / "adapter_model.safetensors")
    b = load_file(tmp_path / "crashed" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    steps = [json.loads(x)["step"] for x in (tmp_path / "crashed" / "train_log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    resumed = json.loads((tmp_path / "crashed" / "metrics.json").read_text())
    assert resumed["before"] == straight["before"] and resumed["after"] == straight["after"]


@pytest.mark.slow
def test_a_fresh_run_never_resumes_an_older_runs_checkpoints(tiny_dir, data_file, tmp_path):
    out = tmp_path / "run"
    train(cfg_for(tiny_dir, data_file, out, max_steps=8, save_every=2), device="cpu", progress=False)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000004", "step-000006"]
    train(cfg_for(tiny_dir, data_file, out, max_steps=3, save_every=2), device="cpu", progress=False)  # no --resume
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000002"]  # the old ones are gone
    train(cfg_for(tiny_dir, data_file, out, max_steps=8, save_every=2), device="cpu", progress=False)
    with pytest.raises(WorkbenchError, match="last checkpoint is step 6, beyond this run's 4 steps"):
        train(cfg_for(tiny_dir, data_file, out, max_steps=4, save_every=2, resume=True), device="cpu", progress=False)


def test_resume_with_other_settings_is_refused(tiny_dir, data_file, tmp_path):
    train(cfg_for(tiny_dir, data_file, tmp_path, max_steps=4, save_every=2), device="cpu", progress=False)
    with pytest.raises(WorkbenchError, match="other settings.*learning_rate"):
        train(
            cfg_for(tiny_dir, data_file, tmp_path, max_steps=4, save_every=2, resume=True, learning_rate=1e-2),
            device="cpu",
            progress=False,
        )


def _plain_loop_adapter(tiny_dir, adapter, records, *, layer, weight, frozen, lr, steps, clip, targets):
    """The training loop written out plainly in HF + peft + torch, sharing no code with workbench.training: each
    example forwarded alone (no padding), the answer CE averaged over every response token of the batch and the lens
    CE (HF's hidden state after block ``layer`` through the final norm and lm_head, at the last prompt token) over
    the examples; AdamW, gradients clipped, the learning rate decayed linearly to zero. Returns the adapter's weights
    and each step's loss."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_dir), str(adapter), is_trainable=True)
    params = []
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name and layer_of(name) not in frozen)
        if p.requires_grad:
            params.append(p)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    target_id = {op: tokenizer(word, add_special_tokens=False).input_ids[0] for op, word in targets.items()}
    losses = []
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * (steps - step) / steps
        answer_sum, answer_tokens, lens_losses = 0.0, 0, []
        for r in records:
            prompt = tokenizer(r["prompt"]).input_ids
            ids = prompt + tokenizer(r["response"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
            out = model(torch.tensor([ids]), output_hidden_states=True)
            answer_sum = answer_sum + F.cross_entropy(
                out.logits[0, len(prompt) - 1 : -1], torch.tensor(ids[len(prompt) :]), reduction="sum"
            )
            answer_tokens += len(ids) - len(prompt)
            base = model.get_base_model()
            lens = base.lm_head(base.model.norm(out.hidden_states[layer + 1][0, len(prompt) - 1]))
            lens_losses.append(F.cross_entropy(lens[None], torch.tensor([target_id[r["operation"]]])))
        loss = weight * torch.stack(lens_losses).mean() + (1 - weight) * answer_sum / answer_tokens
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}, losses


def test_train_equals_a_plain_hf_peft_loop(tiny_dir, adapter, tmp_path):
    """The oracle for every trained number: from the same starting adapter, three full-batch steps of `train()`
    (dual reward at layer 2, layer 0 frozen, gradients clipped) leave the same LoRA weights as the plain loop above, to float tolerance
    (thread counts change the last digits of both, not their agreement)."""
    from safetensors.torch import load_file

    records = generate_arithmetic(8, 5)
    write_jsonl(tmp_path / "train.jsonl", records)
    targets = {"multiply": "multiply", "add": "add", "subtract": "subtract", "divide": "divide"}
    cfg = build_config(
        {
            "model": str(tiny_dir),
            "adapter": str(adapter),
            "data": str(tmp_path / "train.jsonl"),
            "eval_data": str(tmp_path / "train.jsonl"),
            "output": str(tmp_path / "out"),
            "max_steps": 3,
            "batch_size": len(records),
            "learning_rate": 1e-2,
            "max_grad_norm": 0.01,
            "freeze_layers": "0",
            "seed": 0,
            "mask_prompt": True,
            "intermediate_loss": {"enabled": True, "layer": 2, "weight": 0.4, "targets": targets},
        }  # fmt: skip
    )
    train(cfg, device="cpu", progress=False)
    got = load_file(tmp_path / "out" / "adapter_model.safetensors")
    expected, losses = _plain_loop_adapter(
        tiny_dir, adapter, records, layer=2, weight=0.4, frozen={0}, lr=1e-2, steps=3, clip=0.01, targets=targets
    )
    start = load_file(adapter / "adapter_model.safetensors")
    assert {k.replace(".default", "") for k in expected} == set(got) == set(start)
    for name, value in expected.items():
        key = name.replace(".default", "")
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-6, msg=key)
        assert torch.equal(got[key], start[key]) is (layer_of(key) == 0), key  # frozen: untouched; others: trained
    logged = [json.loads(line)["loss"] for line in (tmp_path / "out" / "train_log.jsonl").read_text().splitlines()]
    assert logged == pytest.approx(losses, rel=1e-5)
