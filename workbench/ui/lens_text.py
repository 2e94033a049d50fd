"""The layer explorer's text beside its figures, as HTML: the top-k and target tables, the top-token line, and the
note the KL tab shows while no adapter is shown."""

from __future__ import annotations

import html


def _code(text: str) -> str:
    return f"<code>{html.escape(text)}</code>"


def lens_table(variant: str, result: dict) -> str:
    """The top-k tokens and each target's probability and rank (``result``: ``LensView.at``)."""
    top = "".join(
        f"<tr><td>{i}</td><td>{_code(repr(t['token']))}</td><td>{t['prob']:.4f}</td></tr>"
        for i, t in enumerate(result["top"], 1)
    )
    rows = []
    for word, t in result["targets"].items():
        read_as = "" if t["token"] == word else f" (as {_code(repr(t['token']))})"
        rows.append(f"<tr><td>{_code(word)}{read_as}</td><td>{t['prob']:.2e}</td><td>{t['rank']}</td></tr>")
    return (
        f"<div style='margin-right:1.5em;font-size:12px;line-height:1.25'><b>{html.escape(variant)}</b>"
        f"<table><tr><th>#</th><th>token</th><th>p</th></tr>{top}</table>"
        f"<table><tr><th>target</th><th>p</th><th>rank</th></tr>{''.join(rows)}</table></div>"
    )


def top_token_lines(current: dict[str, dict], prompt: str, token: str) -> str:
    """One line per variant (``current``: variant -> ``LensView.at``): the prompt, layer, position and its ``token``,
    and the lens's top token there (the browser tests wait on these lines)."""
    return "<br>".join(
        f"<b>{html.escape(v)}</b> · <span class='wb-shown-prompt'>{html.escape(repr(prompt))}</span> · "
        f"layer {r['layer']} · position {r['position']} {html.escape(token)}: top token "
        f"<code class='wb-top'>{html.escape(repr(r['top'][0]['token']))}</code> (p = {r['top'][0]['prob']:.3f})"
        for v, r in current.items()
    )


def kl_note(adapters: list[str], all_of_them: str) -> str:
    """How to see KL(adapter || base): pick one of ``adapters`` (or ``all_of_them``) in the model menu, or load one."""
    if adapters:
        how = f"pick one ({', '.join(map(repr, adapters))}) or {all_of_them!r} in the <i>model</i> menu"
    else:
        how = (
            "start the explorer with a run folder whose adapters are then offered in the <i>model</i> menu "
            "(<code>workbench explore --run runs/NAME</code>, or <code>adapters=</code> in Python)"
        )
    return (
        f"<div style='padding:2em'><b>Load an adapter</b> to see KL(adapter || base model) of the lens at every "
        f"layer: {how}.</div>"
    )
