"""Residual capture vs a plain Hugging Face forward, side by side.

Contenders, on the same 64 arithmetic prompts ("a op b = ", drawn like the guide's generator):

  capture      workbench.core.activations.capture_last_token(lm, prompts, batch_size=64): all 30 layers'
               blocks.L.hook_resid_post at the last prompt token (includes its own tokenization)
  hf           lm.hf_model(input_ids, output_hidden_states=True) under torch.inference_mode, on the batch
               lm.tokenize(prompts) builds (the same right-padded ids)
  hf_no_head   (informational) lm.hf_model.model(input_ids, output_hidden_states=True): the same forward
               without the LM head, i.e. the hidden states alone

Target: median(capture) / median(hf) <= 1.15.

    .venv/bin/python benchmarks/capture_vs_hf.py [--quick] [--check] [--reps N] [--device cpu]
"""

from __future__ import annotations

import _bench

TARGET = 1.15
N_PROMPTS = 64


def main() -> None:
    args = _bench.parser(__doc__.splitlines()[0], reps=11, quick_reps=3).parse_args()
    reps = _bench.n_reps(args)

    import torch

    from workbench.core.activations import capture_last_token
    from workbench.core.models import load_model

    lm = load_model("default", device=args.device)
    timed = _bench.make_timer(lm.device)
    prompts = _bench.arithmetic_prompts(N_PROMPTS)
    batch = lm.tokenize(prompts)
    n_layers = lm.n_layers

    def run_capture():
        return capture_last_token(lm, prompts, batch_size=N_PROMPTS)

    def run_hf():
        with torch.inference_mode():
            return lm.hf_model(batch.input_ids, output_hidden_states=True)

    def run_hf_no_head():
        with torch.inference_mode():
            return lm.hf_model.model(batch.input_ids, output_hidden_states=True)

    # Sanity (not timed): the capture is HF hidden_states[L+1] at the last prompt token.
    feats = run_capture()
    hidden = run_hf().hidden_states
    rows = torch.arange(len(prompts), device=batch.input_ids.device)
    # HF's last hidden state has the final norm applied and the hook's does not, so compare layers 0..n-2.
    ref = torch.stack([hidden[i + 1][rows, batch.last_index].float().cpu() for i in range(n_layers - 1)], dim=1)
    max_diff = (feats[:, : n_layers - 1] - ref).abs().max().item()

    print(_bench.machine_line(lm.device))
    print(
        f"batch: {len(prompts)} prompts x {batch.input_ids.shape[1]} tokens (right-padded), {n_layers} layers, "
        f"e.g. {prompts[:3]}"
    )
    print(f"sanity: max |capture - HF hidden_states[L+1]| over layers 0-{n_layers - 2} = {max_diff:.2e}")
    print(f"{reps} interleaved rounds after 1 warm-up round; {_bench.load_average()}")
    print()

    times = _bench.interleaved(
        {"capture": run_capture, "hf": run_hf, "hf_no_head": run_hf_no_head}, reps=reps, warmup=1, timed=timed
    )
    _bench.print_times(times)
    ratio = _bench.median(times["capture"]) / _bench.median(times["hf"])
    paired = _bench.paired_ratios(times["capture"], times["hf"])
    ratio_no_head = _bench.median(times["capture"]) / _bench.median(times["hf_no_head"])
    print()
    print(f"ratio capture/hf          (median/median) = {ratio:.3f}   target <= {TARGET}")
    print(f"ratio capture/hf          (median of per-round ratios) = {_bench.median(paired):.3f}")
    print(f"ratio capture/hf_no_head  (median/median, informational) = {ratio_no_head:.3f}")
    ok = ratio <= TARGET
    _bench.finish(
        f"SUMMARY capture_vs_hf: {_bench.verdict('capture/hf', ratio, f'<= {TARGET}', ok)}; "
        f"capture {_bench.median(times['capture']):.3f}s, hf {_bench.median(times['hf']):.3f}s, "
        f"{len(prompts)} prompts, {reps} reps, device {lm.device}",
        ok,
        args.check,
    )


if __name__ == "__main__":
    main()
