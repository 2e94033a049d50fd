"""The lens over a large vocabulary: time and peak memory of the logit lens at the classifier layer vs the model's own
forward pass, side by side, with the unembedding's size as the yardstick.

Contenders, on the same prompts (``--prompts`` sentiment-style texts of about 30 tokens), batch ``--batch-size``:

  forward   lm.hf_model(input_ids).logits           HF's forward: logits at every position, [batch, seq, vocab]
  lens      logit_lens(lm, prompts, words, layer)   the workbench's lens: residuals captured at the last token, one
                                                     [batch, vocab] log-softmax through the final norm and unembedding

Peak memory is the largest resident-set growth a 1 ms sampler sees during a call. A lens that copied the unembedding
(vocab x d_model floats) per prompt would grow by at least that much; the script prints the lens's peak growth as a
fraction of it (target: < 0.5 at batch 16) and the lens / forward ratios. Gemma-3-270M's vocabulary is 262,144
(``--model gemma3-270m``, the optional extra); SmolLM2's 49,152.

    .venv/bin/python benchmarks/lens_vocab.py [--model gemma3-270m] [--quick] [--check] [--reps N] [--batch-size 16]
"""

from __future__ import annotations

import threading
import time

import _bench

TARGET_COPY_FRACTION = 0.5
TEXTS = [
    "a gripping, beautifully acted story that never lets go",
    "the plot wanders and the jokes land with a thud",
    "an uneven but often delightful comedy about growing up",
    "two hours of my life I will never get back",
]


class PeakRSS:
    """The largest RSS growth over the level at entry, sampled every millisecond."""

    def __enter__(self):
        import psutil

        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.grew = self.peak - self.base


def build_parser():
    p = _bench.parser(__doc__.splitlines()[0], reps=5, quick_reps=2)
    p.add_argument("--model", default="default")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--words", default=" positive| negative", help="the lens's target words, '|'-separated")
    return p


def main(argv: list[str] | None = None) -> dict:
    """Measure, print the table and the SUMMARY line; the numbers as a dict (``ok``: the lens's peak growth is below
    ``TARGET_COPY_FRACTION`` of the unembedding)."""
    args = build_parser().parse_args(argv)
    import torch

    from workbench.core.lens import logit_lens
    from workbench.core.models import load_model

    lm = load_model(args.model, device=args.device)
    prompts = [f"Review: {TEXTS[i % len(TEXTS)]} (take {i})\nSentiment:" for i in range(args.batch_size)]
    words = args.words.split("|")
    batch = lm.tokenize(prompts)
    unembed_bytes = lm.hf_model.config.vocab_size * lm.d_model * 4

    mask = torch.arange(batch.input_ids.shape[1])[None, :] < batch.lengths[:, None]

    def forward():
        with torch.inference_mode():
            return lm.hf_model(batch.input_ids.to(lm.device), attention_mask=mask.long().to(lm.device)).logits

    def lens():
        return logit_lens(lm, prompts, words, lm.classifier_layer, batch_size=args.batch_size)

    contenders = {"forward": forward, "lens": lens}
    for fn in contenders.values():  # warm-up: allocator pools and lazily read weights
        fn()
    seconds: dict[str, list[float]] = {k: [] for k in contenders}
    grew: dict[str, list[int]] = {k: [] for k in contenders}
    for rep in range(_bench.n_reps(args)):
        order = list(contenders) if rep % 2 == 0 else list(contenders)[::-1]
        for name in order:
            with PeakRSS() as peak:
                t0 = time.perf_counter()
                contenders[name]()
                seconds[name].append(time.perf_counter() - t0)
            grew[name].append(peak.grew)
    med = {k: sorted(v)[len(v) // 2] for k, v in seconds.items()}
    mem = {k: max(v) for k, v in grew.items()}
    mib = 2**20
    print(
        f"{lm.model_id}: vocab {lm.hf_model.config.vocab_size}, d_model {lm.d_model}, batch {args.batch_size}, "
        f"{batch.input_ids.shape[1]} tokens; unembedding {unembed_bytes / mib:.0f} MiB (fp32)"
    )
    for k in contenders:
        print(f"  {k:<8} median {med[k] * 1000:8.1f} ms   peak RSS growth {mem[k] / mib:8.1f} MiB")
    fraction = mem["lens"] / unembed_bytes
    print(
        f"lens / forward: time {med['lens'] / med['forward']:.2f}x, peak growth {mem['lens'] / max(mem['forward'], 1):.2f}x; "
        f"lens peak growth / unembedding = {fraction:.3f} (target < {TARGET_COPY_FRACTION})"
    )
    print(
        f"SUMMARY lens_vocab model={args.model} lens_over_unembedding={fraction:.3f} "
        f"time_ratio={med['lens'] / med['forward']:.2f}"
    )
    return {
        "model": lm.model_id,
        "median_s": med,
        "peak_growth_bytes": mem,
        "unembedding_bytes": unembed_bytes,
        "lens_over_unembedding": fraction,
        "ok": fraction < TARGET_COPY_FRACTION,
    }


if __name__ == "__main__":
    outcome = main()
    raise SystemExit(1 if build_parser().parse_args().check and not outcome["ok"] else 0)
