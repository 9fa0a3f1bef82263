"""Instruction retrieval: an unseen phrasing is answered as the nearest instruction the policy
was trained on that names the same objects in the same order.

Why: the language encoder is frozen and small. It puts "could you raise the blue block"
nearer "stack the blue block on the red block" than any pick instruction, and a policy
conditioned on that vector starts the wrong skill. Retrieval over the whole training set
fixes the verb but swaps a stack's two cubes ("rest the red cube atop the green block" ->
"place the green cube onto the red block"). Requiring the same object words, in the same
order, keeps who-goes-where from the user's sentence and lets the encoder decide only what
it is good at: which known sentence means the same thing.

The encoder compares the sentences with their object phrases masked ("sweep the object into
the marked area"): the candidates already name the same objects, so the object words only
add noise, and with them in place "sweep the green block into the marked area" came out
nearer "grab the green block" than any push. The mask word was chosen on paraphrases
written for the purpose, not the evaluation's (docs/cerebellum.md). The training
instructions and the object vocabulary are saved in the checkpoint's config.
"""

from __future__ import annotations

import numpy as np

from embodia.cerebellum.language import LanguageEncoder


def object_vocabulary(env_state_names: list[str], synonyms: dict[str, tuple[str, ...]]) -> dict[str, str]:
    """word -> canonical word for every word naming an object: the parts of the object-state
    names ('red_cube.x' -> red, cube) and the nouns the scene's language uses for a class
    (`synonyms`: class -> nouns, e.g. cube -> (cube, block))."""
    words: dict[str, str] = {}
    for name in env_state_names:
        for w in name.rsplit(".", 1)[0].replace(".", "_").split("_"):
            if w:
                words[w] = w
    for cls, nouns in synonyms.items():
        for n in nouns:
            words[n] = cls
    return words


def retrieval_fields(task_lists: list[list[str]], env_state_names: list[str]) -> tuple[list[str], dict[str, str]]:
    """What a checkpoint records for retrieval: its training datasets' instructions (sorted,
    unique) and the object vocabulary of its object-state names plus the scene's nouns."""
    from embodia.body.skills import NOUNS

    known = sorted({t for tasks in task_lists for t in tasks if t})
    return known, object_vocabulary(env_state_names, NOUNS) if env_state_names else {}


MASK = "object"


class InstructionRetrieval:
    """text -> the nearest of `known` (by the frozen encoder's cosine between the two with
    their object phrases masked) among those whose object words match the text's, in order;
    the text itself when it is known or nothing matches. Each distinct text is resolved once."""

    def __init__(self, known: list[str], object_words: dict[str, str], language: LanguageEncoder) -> None:
        if not known:
            raise ValueError("instruction retrieval needs the training instructions (config known_instructions)")
        self.known = sorted(set(known))
        self.object_words = object_words
        self.language = language
        self._by_objects: dict[tuple[str, ...], list[int]] = {}
        for i, t in enumerate(self.known):
            self._by_objects.setdefault(self.objects(t), []).append(i)
        self._emb: np.ndarray | None = None
        self._cache: dict[str, str] = {}

    def objects(self, text: str) -> tuple[str, ...]:
        return tuple(self.object_words[w] for w in text.lower().replace(",", " ").split() if w in self.object_words)

    def masked(self, text: str) -> str:
        """The text with each run of object words replaced by one MASK word."""
        out: list[str] = []
        in_run = False
        for w in text.lower().replace(",", " ").split():
            if w in self.object_words and not in_run:
                out.append(MASK)
            elif w not in self.object_words:
                out.append(w)
            in_run = w in self.object_words
        return " ".join(out)

    def __call__(self, text: str) -> str:
        if text in self._cache:
            return self._cache[text]
        out = text
        cands = self._by_objects.get(self.objects(text), [])
        if text not in self.known and cands:
            if self._emb is None:
                self._emb = np.stack([self.language.encode([self.masked(t) for t in self.known]).numpy(),
                                      self.language.encode(self.known).numpy()])
            q = np.stack([self.language.encode([self.masked(text)]).numpy()[0],
                          self.language.encode([text]).numpy()[0]])
            # masked similarity decides; the full sentences only break its ties (known
            # instructions that differ in "block" / "cube" alone mask to the same text)
            out = self.known[max(cands, key=lambda i: float(self._emb[0, i] @ q[0]) + 1e-3 * float(self._emb[1, i] @ q[1]))]
        self._cache[text] = out
        return out
