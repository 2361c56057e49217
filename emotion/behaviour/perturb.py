"""The invariance tests' perturbations: each takes a text, a seeded random generator and the
lexicons, and returns the perturbed text, or None where it does not apply (no word to
misspell, no contraction to change)."""

from __future__ import annotations

import random
from collections.abc import Callable


def _name(text: str, rng: random.Random, lexicons: dict) -> str:
    return f"{rng.choice(lexicons['name'])}, {text}"


def _mention(text: str, rng: random.Random, lexicons: dict) -> str:
    return f"@{rng.choice(lexicons['handle'])} {text}"


def _url(text: str, rng: random.Random, lexicons: dict) -> str:
    return f"{text} {rng.choice(lexicons['url'])}"


def _hashtag(text: str, rng: random.Random, lexicons: dict) -> str:
    return f"{text} #{rng.choice(lexicons['hashtag'])}"


def _emoji(text: str, rng: random.Random, lexicons: dict) -> str:
    return f"{text} {rng.choice(lexicons['emoji'])}"


def _typo(text: str, rng: random.Random, lexicons: dict) -> str | None:
    words = text.split(" ")
    long = [i for i, word in enumerate(words) if len(word) >= 4 and word.isalpha()]
    if not long:
        return None
    index = rng.choice(long)
    word = words[index]
    at = rng.randrange(len(word) - 1)
    if word[at] == word[at + 1]:
        return None
    words[index] = word[:at] + word[at + 1] + word[at] + word[at + 2:]
    return " ".join(words)


def _upper(text: str, rng: random.Random, lexicons: dict) -> str:
    return text.upper()


def _exclamation(text: str, rng: random.Random, lexicons: dict) -> str:
    return text.rstrip(" .!") + "!!"


def _contraction(text: str, rng: random.Random, lexicons: dict) -> str | None:
    padded = f" {text} "
    for before, after in lexicons["contractions"]:
        if f" {before}" in padded:
            return padded.replace(f" {before}", f" {after}", 1).strip()
    return None


PERTURBATIONS: dict[str, Callable[[str, random.Random, dict], str | None]] = {
    "name": _name, "mention": _mention, "url": _url, "hashtag": _hashtag, "emoji": _emoji,
    "typo": _typo, "upper": _upper, "exclamation": _exclamation, "contraction": _contraction}
# The lexicon keys each perturbation draws from.
NEEDS = {"name": ["name"], "mention": ["handle"], "url": ["url"], "hashtag": ["hashtag"],
         "emoji": ["emoji"], "contraction": ["contractions"]}
