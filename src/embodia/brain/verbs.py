"""Verbs outside the lexicon, read by meaning: nearest neighbours in MiniLM space.

Why: people say "plunk the red cube in the bowl" or "dump it in the drawer"; a word list never
ends. A verb the clause grammar does not know is put in a neutral frame ("plunk the red block"),
embedded with the frozen MiniLM encoder, and compared with the same frame of every lexicon verb
and of actions the robot cannot do ("throw", "paint", ...). The nearest class wins if its
similarity beats the best other class by a margin; the margin was calibrated by leaving each
lexicon verb out in turn (`calibrate`), so an accepted reading is right about as often as the
calibration says. Below the margin the brain asks (a clarification naming the readings), it
never guesses; a verb nearest to an action the robot does not have is refused, naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embodia.brain.embedding import SentenceEncoder

# Actions the robot has no skill for; a verb nearest to these is refused (by its own name).
UNSUPPORTED = ("throw", "hurl", "fling", "paint", "colour", "cut", "slice", "pour", "wipe", "scrub",
               "wash", "rinse", "rotate", "spin", "turn over", "flip", "twist", "shake", "fold",
               "break", "smash", "crush", "squeeze", "kick", "hit", "punch", "eat", "lick", "smell",
               "taste", "bite", "juggle", "bounce", "balance", "weigh", "measure", "count", "sort",
               "hand", "give", "offer", "show", "point at", "look at", "watch", "draw on", "write on",
               "melt", "burn", "heat", "freeze", "glue", "tape", "tie", "wrap", "unwrap", "hide from")
# Frames with a constant object, so only the verb moves the embedding; a verb's vector is the
# mean over frames (three frames read 66% of bank verbs right against 60% for one).
FRAMES = ("{} the red block", "please {} it", "i want you to {} the cube")
ACCEPT_MARGIN = 0.06  # see `calibrate`: leave-one-out precision of accepted readings 0.84


@dataclass(frozen=True)
class VerbReading:
    word: str  # the verb as the person wrote it
    verb: str | None  # a lexicon verb class, or None: unsupported
    similarity: float
    margin: float  # over the best reading of another class
    runner_up: str | None  # that other class (None: unsupported)

    @property
    def confident(self) -> bool:
        return self.margin >= ACCEPT_MARGIN


class VerbMapper:
    """Unknown verb -> the lexicon class nearest in meaning (or 'unsupported'), with a margin."""

    def __init__(self, lexicon: tuple[tuple[str, str], ...], encoder: SentenceEncoder | None = None) -> None:
        self.encoder = encoder or SentenceEncoder()
        skip = {"tower", "clear", "empty"}  # phrases, not verbs of one object
        self.bank = [(p, v) for p, v in lexicon if v not in skip and " " not in p.strip()] + [
            (u, None) for u in UNSUPPORTED]
        self._vectors: np.ndarray | None = None

    def embed(self, words: list[str]) -> np.ndarray:
        v = np.mean([self.encoder.encode([f.format(w) for w in words]) for f in FRAMES], axis=0)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def vectors(self) -> np.ndarray:
        if self._vectors is None:  # once per mapper
            self._vectors = self.embed([p for p, _ in self.bank])
        return self._vectors

    def read(self, word: str, exclude: str | None = None, merge: dict[str, str] | None = None) -> VerbReading:
        """The nearest class for `word`; `exclude` leaves one bank entry out (calibration);
        `merge` counts some classes as one (with a destination, every carrying verb puts)."""
        sims = self.vectors() @ self.embed([word])[0]
        best: dict[str | None, float] = {}
        for (phrase, cls), s in zip(self.bank, sims, strict=True):
            if phrase == exclude:
                continue
            cls = (merge or {}).get(cls, cls)
            if s > best.get(cls, -2.0):
                best[cls] = float(s)
        ranked = sorted(best.items(), key=lambda kv: -kv[1])
        (top, s1), (second, s2) = ranked[0], ranked[1]
        return VerbReading(word, top, s1, s1 - s2, second)


def calibrate(mapper: VerbMapper, margins: tuple[float, ...] = (0.0, 0.02, 0.04, 0.06, 0.08),
              merge: dict[str, str] | None = None) -> list[dict]:
    """Leave-one-out over the bank: for each margin, the share of verbs accepted and the share
    of accepted ones read as their own class. ACCEPT_MARGIN is the margin of the highest
    precision that still accepts a third of the verbs (benchmarks/brain_plan.py prints this,
    with and without a destination's `merge`)."""
    merge = merge or {}
    reads = [(merge.get(cls, cls), mapper.read(p, exclude=p, merge=merge)) for p, cls in mapper.bank]
    rows = []
    for m in margins:
        accepted = [(cls, r) for cls, r in reads if r.margin >= m]
        right = sum(1 for cls, r in accepted if r.verb == cls)
        rows.append({"margin": m, "coverage": round(len(accepted) / len(reads), 3),
                     "precision": round(right / len(accepted), 3) if accepted else None})
    return rows
