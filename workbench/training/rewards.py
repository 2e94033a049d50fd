"""Reward functions for `workbench train grpo` (TRL calls them with the completions and the data set's columns).

Any ``module:function`` with this signature can be named in the config's ``reward`` key.
"""

from __future__ import annotations

from ..core.arithmetic import answer_correct


def arithmetic_reward(completions: list, answer: list[str], **_) -> list[float]:
    """The guide's RL reward: 1.0 when the first integer in the completion equals the answer, else 0.0."""
    out = []
    for completion, expected in zip(completions, answer):
        text = completion if isinstance(completion, str) else completion[-1]["content"]  # plain or chat completions
        out.append(1.0 if answer_correct(text, expected) else 0.0)
    return out


def class_word_reward(completions: list, answer: list[str], **_) -> list[float]:
    """A classification task's reward: 1.0 when the completion begins with the class word (" positive" after
    "Sentiment:"; the word must end there, so " positively" does not count), else 0.0."""
    out = []
    for completion, expected in zip(completions, answer):
        text = (completion if isinstance(completion, str) else completion[-1]["content"]).lstrip()
        word = str(expected).strip()
        rest = text[len(word) :]
        out.append(1.0 if text.startswith(word) and not (rest[:1].isalnum() or rest[:1] == "_") else 0.0)
    return out
