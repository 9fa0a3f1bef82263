"""Grounding: a noun phrase ("the crimson block", "every cube", "the cube on the plate")
to the scene objects it names, or a refusal that says which phrase failed and what is there.

How: colours and classes come from a synonym lexicon first (exact, explainable); a head
noun the lexicon does not know is compared with class exemplars by all-MiniLM-L6-v2
similarity and accepted only when it is both close (>= `threshold`) and clearly closer to
one class than to any other (>= `margin`). Colours never come from MiniLM: measured on
this model, single colour words land on the wrong colour too often ("golden cube" is
nearest the green cube), so an unknown colour word is a refusal, not a guess.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from embodia.brain.embedding import SentenceEncoder
from embodia.brain.refusal import Refusal
from embodia.brain.state import HAND, TABLE, ZONE, State, lit

COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("red", "crimson", "scarlet", "ruby", "cherry", "maroon", "vermilion"),
    "green": ("green", "emerald", "lime", "olive", "jade"),
    "blue": ("blue", "navy", "azure", "cobalt", "sapphire"),
    "yellow": ("yellow", "golden", "gold", "lemon", "amber", "mustard"),
    "white": ("white", "ivory", "cream"),
    "gray": ("gray", "grey", "silver", "slate"),
    "pink": ("pink", "rose", "salmon"),
    "purple": ("purple", "violet", "lavender", "lilac", "mauve"),
    "orange": ("orange", "tangerine"),
    "brown": ("brown", "wooden"),
}
CLASSES: dict[str, tuple[str, ...]] = {
    "cube": ("cube", "block", "brick"),
    "bowl": ("bowl", "container", "basin", "bin", "basket", "tub", "receptacle"),
    "plate": ("plate", "dish", "saucer", "platter", "tray"),
    "drawer": ("drawer", "cabinet"),
    ZONE: ("square", "white square", "marked square", "target square", "target area",
           "marked area", "target", "zone", "target zone", "goal area", "area", "spot",
           "marked spot", "square on the table"),
    TABLE: ("table", "tabletop", "table top", "counter"),
    "": ("one", "thing", "object", "item", "ones", "things", "objects", "items"),
}
# Exemplars MiniLM compares an unknown head noun with (zone and table are never guessed).
EXEMPLARS: dict[str, tuple[str, ...]] = {
    "cube": ("cube", "block", "toy block", "building block"),
    "bowl": ("bowl", "container", "basin"),
    "plate": ("plate", "dish", "tray"),
    "drawer": ("drawer", "cabinet drawer"),
}
SHADES = {"light", "dark", "bright", "pale", "deep", "sky", "grass", "blood", "fire", "sea",
          "coloured", "colored", "small", "little", "tiny", "plastic", "toy", "single", "lone"}
SELECTORS = {"leftmost": "left", "left": "left", "rightmost": "right", "right": "right",
             "nearest": "near", "closest": "near", "farthest": "far", "furthest": "far",
             "top": "top", "topmost": "top", "upper": "top", "bottom": "bottom", "lower": "bottom",
             "bottommost": "bottom", "middle": "middle", "center": "middle", "centre": "middle"}
UNIVERSAL = {"all", "every", "each", "both", "everything"}
COUNTS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
INDEFINITE = {"a", "an", "any", "some"}
PRONOUNS = {"it", "them", "that", "this", "those", "these", "itself"}
EXCEPT = re.compile(r"\s+(?:except for|except|but not|other than|apart from|aside from|excluding|"
                    r"save for|but)\s+")
NEAR = re.compile(r"\s+(?:that is |which is |that's )?(?:closest to|nearest to|next to|close to|"
                  r"beside|nearest|closest|near|by)\s+((?:the|that|this|it)\b.*)$")  # not "the nearest block"
ORDINALS = {"first": 1, "1st": 1, "second": 2, "2nd": 2, "third": 3, "3rd": 3, "fourth": 4, "4th": 4,
            "fifth": 5, "5th": 5, "sixth": 6, "6th": 6}
ORDINAL = re.compile(r"\b(" + "|".join(ORDINALS) + r")\b\s*(.*?)\s+from the (left|right)$")
RELATION = re.compile(r"\s+(?:(?:that is|which is|that's|that are|which are) )?(?:(?:sitting|lying|resting|stacked|placed|sat|kept) )?"
                      r"(on top of|inside of|inside|in|on|from|out of|off of|off|under|beneath)\s+(.*)$")

_COLOUR_WORD = {w: c for c, ws in COLOURS.items() for w in ws}
_CLASS_PHRASE = {w: c for c, ws in CLASSES.items() for w in ws}
CLASS_WORDS = frozenset(w for ws in CLASSES.values() for w in ws)  # never a verb


def singular(word: str) -> str:
    for suffix, repl in (("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(suffix) and word[: len(word) - len(suffix)] + repl in _CLASS_PHRASE:
            return word[: len(word) - len(suffix)] + repl
    return word


@dataclass
class Mention:
    """A parsed noun phrase: what it asks for, before looking at the scene."""

    text: str
    quant: str = "the"  # the | a | all | pronoun
    colour: str | None = None
    cls: str | None = None  # cube | bowl | plate | drawer | zone | table | None (any)
    plural: bool = False
    selector: str | None = None
    relation: tuple[str, Mention] | None = None
    exclude: list[Mention] = field(default_factory=list)  # "every cube except the red one"
    near: Mention | None = None  # "the cube next to the bowl", "the one closest to the drawer"
    rank: int = 1  # "the second cube from the left": the selector's 2nd
    count: int = 0  # "two of the cubes": that many, our choice which
    held: bool = False  # "the held cube": the one in hand
    notes: list[str] = field(default_factory=list)


class Grounder:
    """Parses noun phrases and resolves them against a `State`."""

    def __init__(self, encoder: SentenceEncoder | None = None, threshold: float = 0.70,
                 margin: float = 0.20) -> None:
        self.encoder = encoder or SentenceEncoder()
        self.threshold, self.margin = threshold, margin
        self._labels = [(c, e) for c, es in EXEMPLARS.items() for e in es]

    # ------------------------------------------------------------------ parsing
    def parse(self, text: str, allow_relation: bool = True) -> Mention:
        text = re.sub(r"\s+", " ", text.strip().lower())
        text = re.sub(r"^(of )?", "", text)
        for pattern, repl in SELECTOR_PHRASES:  # "the cube on the left" = "the leftmost cube"
            text = pattern.sub(repl, text)
        if not text:
            raise Refusal("unknown", text, "an object is missing here")
        m = Mention(text)
        x = EXCEPT.search(text)
        if allow_relation and x is not None and x.start() > 0:
            m = self.parse(text[: x.start()])  # "the cube other than the red one": one must be left
            m.text = text
            m.exclude = [self.parse(p) for p in re.split(r"\s*(?:,|\band\b|\bor\b|\bnor\b)\s*",
                                                         text[x.end():]) if p]
            return m
        n = NEAR.search(" " + text)
        if allow_relation and n is not None and n.start() > 0:
            core = (" " + text)[: n.start()].strip()
            if core and core not in PRONOUNS and core not in ("the", "a", "an", "one"):
                m = self.parse(core, allow_relation=False)
                m.text, m.near = text, self.parse(n.group(1))
                return m
        o = ORDINAL.search(text)
        if o is not None:  # "the second cube from the left": the left selector's 2nd
            m = self.parse(f"{text[: o.start()]}{o.group(2)}".strip() or "one", allow_relation=False)
            m.text, m.selector, m.rank = text, o.group(3), ORDINALS[o.group(1)]
            m.cls = m.cls or "cube"  # "the second one from the left": a row of cubes
            return m
        if allow_relation:
            r = RELATION.search(" " + text)
            if r is not None and r.start() > 0:
                core = (" " + text)[: r.start()].strip()
                if core and core not in PRONOUNS:
                    m = self.parse(core, allow_relation=False)
                    m.text = text
                    m.relation = (r.group(1), self.parse(r.group(2)))
                    return m
        words = text.replace("-", " ").split()
        if words in (["it"], ["itself"], ["that"], ["this"], ["them"], ["those"], ["these"],
                     ["that", "one"], ["this", "one"]):
            m.quant, m.plural = "pronoun", words[0] in ("them", "those", "these")
            return m
        if words[:2] in (["all", "of"], ["each", "of"], ["both", "of"]):
            words = [words[0], *words[2:]]
        if words and words[0] in COUNTS and words[0] != "one":  # "two of the cubes", "three cubes"
            m.quant, m.plural, m.count = "a", True, COUNTS[words[0]]
            words = words[2:] if words[1:2] == ["of"] else words[1:]
        elif words[:3] == ["one", "of", "the"]:
            words, m.quant = words[3:], "a"
        elif words and words[0] in UNIVERSAL:
            m.quant, m.plural = "all", True
            if words[0] == "everything":
                m.cls = "cube"
            words = words[1:]
        elif words and words[0] in INDEFINITE:
            m.quant = "a"
            words = words[1:]
        elif words and words[0] in ("the", "its"):
            words = words[1:]
        if words and words[0] == "the":
            words = words[1:]
        head: list[str] = []
        for w in words:
            if w in _COLOUR_WORD and not head:
                if m.colour is not None and m.colour != _COLOUR_WORD[w]:
                    raise Refusal("unknown", text, f"names two colours ({m.colour}, {_COLOUR_WORD[w]})")
                m.colour = _COLOUR_WORD[w]
                if w != m.colour:
                    m.notes.append(f"{w} = {m.colour}")
            elif w in SELECTORS and not head:
                m.selector = SELECTORS[w]
            elif w == "held" and not head:  # "the held cube" (instruction.py says it so)
                m.held = True
            elif w in SHADES and not head:
                continue
            else:
                head.append(w)
        if head:
            phrase = " ".join(head)
            cls = _CLASS_PHRASE.get(phrase) or _CLASS_PHRASE.get(" ".join([*head[:-1], singular(head[-1])]))
            if cls is not None:
                if singular(head[-1]) != head[-1] and head[-1] not in _CLASS_PHRASE:
                    m.plural = True
                if head[-1] in ("ones", "things", "objects", "items"):
                    m.plural = True
                if phrase not in (cls, "one") and cls:
                    m.notes.append(f"{phrase} = {cls}")
                m.cls = cls or m.cls
            else:
                m.cls, note = self._similar_class(phrase, text)
                m.notes.append(note)
                m.plural = m.plural or phrase.endswith("s")
        if m.quant == "all" and m.cls is None:
            m.cls = "cube"
        return m

    def _similar_class(self, phrase: str, text: str) -> tuple[str, str]:
        """The class MiniLM puts `phrase` in, when it is sure; else a refusal."""
        stray = [w for w in phrase.split() if w in _COLOUR_WORD or w in ("and", "the", "or", "but")]
        if stray:
            raise Refusal("unknown", text, f"cannot read '{phrase}' as one object "
                          f"(stray word{'s' if len(stray) > 1 else ''}: {', '.join(stray)})")
        vecs = self.encoder.encode([f"the {phrase}"] + [f"the {e}" for _, e in self._labels])
        sims = vecs[1:] @ vecs[0]
        best: dict[str, float] = {}
        for (cls, _), s in zip(self._labels, sims, strict=True):
            best[cls] = max(best.get(cls, -1.0), float(s))
        ranked = sorted(best.items(), key=lambda kv: -kv[1])
        (c1, s1), (_, s2) = ranked[0], ranked[1]
        if s1 >= self.threshold and s1 - s2 >= self.margin:
            return c1, f"{phrase} ~ {c1} (MiniLM {s1:.2f}, next {s2:.2f})"
        raise Refusal("unknown", text, f"I do not know what '{phrase}' is "
                      f"(closest: {c1}, similarity {s1:.2f}, too unsure to act on)")

    # ------------------------------------------------------------------ resolving
    def resolve(self, m: Mention, state: State, scene_words: bool = True,
                besides: tuple[str, ...] = ()) -> list[str]:
        """Object names `m` refers to. Definite singular phrases must name exactly one.
        `besides`: objects it cannot mean (a cube is not stacked on itself)."""
        if m.cls in (ZONE, TABLE):
            return [m.cls]
        names = [n for n, o in state.objects.items() if n not in besides
                 and (m.cls is None or o.cls == m.cls) and (m.colour is None or o.colour == m.colour)]
        if m.held:
            names = [n for n in names if state.support.get(n) == HAND]
            if not names:
                raise Refusal("unknown", m.text, "the hand holds nothing", self.present(state))
        if m.relation is not None:
            prep, other = m.relation
            targets = self.resolve(other, state)
            names = [n for n in names if any(_related(state, n, prep, t) for t in targets)]
            if not names:
                raise Refusal("unknown", m.text, f"nothing fits: {self._describe_relation(m, state)}",
                              self.present(state))
        if not names:
            raise Refusal("unknown", m.text, self._nothing(m, state), self.present(state))
        if m.exclude:
            left_out: set[str] = set()
            for e in m.exclude:
                e.cls = m.cls if e.cls is None else e.cls  # "the red one" of "every cube except ..."
                left_out |= set(self.resolve(e, state))
            names = [n for n in names if n not in left_out]
            if not names:
                raise Refusal("unknown", m.text, "nothing is left once the exception is taken out",
                              self.present(state))
        if m.near is not None:  # the nearest to what it names, never that thing itself
            ref = self.resolve(m.near, state)
            if len(ref) != 1:
                raise Refusal("ambiguous", m.near.text, "near which one? say which", self.present(state),
                              [state.describe(n) for n in sorted(ref)])
            names = [n for n in names if n != ref[0]]
            if not names:
                raise Refusal("unknown", m.text, self._nothing(m, state), self.present(state))
            at = np.asarray(state.objects[ref[0]].position[:2])
            names = [min(names, key=lambda n: float(np.linalg.norm(
                np.asarray(state.objects[n].position[:2]) - at)))]
        if m.selector in ("top", "bottom", "middle"):  # a stack's levels, or the middle of a row
            names = _level(state, names, m.selector)
            if len(names) > 1 and m.quant != "a":
                raise self.ambiguous(m.text, names, state)
            if not names:
                raise Refusal("unknown", m.text, f"no cube is at the {m.selector} of a stack"
                              if m.selector != "middle" else "there is no middle one", self.present(state))
        elif m.selector is not None:
            if m.rank > len(names):
                raise Refusal("unknown", m.text, _only(m, len(names)), self.present(state))
            names = _select(state, names, m.selector, m.rank)
            if len(names) > 1:
                raise self.ambiguous(m.text, names, state)
        if m.quant == "all" or (m.plural and m.quant == "the"):
            return sorted(names)
        if len(names) > 1 and m.quant != "a":
            raise self.ambiguous(m.text, names, state)
        if m.count > len(names):
            raise Refusal("unknown", m.text, f"asked for {m.count}, {_only(m, len(names))}", self.present(state))
        if len(names) > 1:  # "a cube", "two cubes": the person left the choice to us; free ones first
            free = [n for n in sorted(names) if state.cls(n) != "cube" or
                    (state.holds(lit("clear", n)) and state.support.get(n) == TABLE)]
            ranked = free + [n for n in sorted(names) if n not in free]
            return sorted(ranked[: max(1, m.count)])
        return names

    def ambiguous(self, phrase: str, names: list[str], state: State) -> Refusal:
        """The refusal for a phrase that could mean any of `names`, which are its readings."""
        which = ", ".join(f"the {state.describe(n)}" for n in sorted(names))
        return Refusal("ambiguous", phrase, f"it could be {which}; say which one", self.present(state),
                       [state.describe(n) for n in sorted(names)])

    def present(self, state: State) -> list[str]:
        return [state.describe(n) for n in sorted(state.objects, key=_order(state))]

    def _nothing(self, m: Mention, state: State) -> str:
        what = " ".join(x for x in (m.colour, m.cls) if x) or m.text
        if m.cls and m.colour:
            same = [state.describe(n) for n, o in state.objects.items() if o.cls == m.cls]
            if same:
                return f"there is no {what}; the {m.cls}{'s are' if len(same) > 1 else ' is'} " \
                       f"{', '.join(s.split()[0] for s in same)}" if m.cls == "cube" else \
                       f"there is no {what}; there is a {same[0]}"
        return f"there is no {what} in the scene"

    def _describe_relation(self, m: Mention, state: State) -> str:
        prep, other = m.relation  # type: ignore[misc]
        base = " ".join(x for x in (m.colour, m.cls) if x) or "object"
        cands = [n for n, o in state.objects.items()
                 if (m.cls is None or o.cls == m.cls) and (m.colour is None or o.colour == m.colour)]
        where = "; ".join(f"the {state.describe(n)} is {state.where(n)}" for n in cands
                          if n in state.support)
        return f"no {base} {prep} {other.text}" + (f" ({where})" if where else "")


def _related(state: State, obj: str, prep: str, target: str) -> bool:
    if obj not in state.support:
        return False
    if prep in ("under", "beneath"):
        return state.support.get(target) == obj
    return any(state.holds(lit(name, obj, target)) for name in ("on", "in"))


_CLS = r"(?P<c>cube|block|box|one)s?"
_THAT = r"(?:that's |that is |which is |that sits |sitting )?"
SELECTOR_PHRASES = [(re.compile(p), r) for p, r in (
    (r"\b(?:further|farther|furthest|farthest) (?:away|back|out)(?: from (?:you|me|the robot))?\b", "farthest"),
    (r"\b(?:furthest|farthest|further|farther) from (?:you|me|the robot)\b", "farthest"),
    (r"\b(?:closest|nearest) (?:to )?(?:you|me|the robot)\b", "nearest"),
    (r"\b(?:closest|nearest) (?:in|up front)\b", "nearest"),
    (r"\bnearer\b", "nearest"), (r"\b(?:further|farther)\b(?! (?:from|to))", "farthest"),
    (r"^whichever " + _CLS + r" is (?P<s>\w+)$", r"the \g<s> \g<c>"),
    (r"^(?P<a>the |that )?" + _CLS + " " + _THAT + r"(?P<s>leftmost|rightmost|nearest|farthest|closest|furthest)$",
     r"the \g<s> \g<c>"),
    (r"^(?P<a>the |that )?" + _CLS + " " + _THAT + r"(?:on|at|to) the (?:far |very )?(?P<s>left|right)(?: side| end| hand side)?$",
     r"the \g<s>most \g<c>"),
    (r"^(?P<a>the |that )?" + _CLS + " " + _THAT + r"(?P<o>\w+) from the (?P<s>left|right)$", r"the \g<o> \g<c> from the \g<s>"),
)]


def _only(m: Mention, n: int) -> str:
    """'there are only 4 cubes': what a count or ordinal past the scene's objects meets."""
    what = " ".join(x for x in (m.colour, m.cls) if x) or "object"
    return f"there {'is' if n == 1 else 'are'} only {n} {what}{'' if n == 1 else 's'}"


TIE_M = 0.02  # two candidates closer than this on the selector's axis: a person could mean either


def _select(state: State, names: list[str], selector: str, rank: int = 1) -> list[str]:
    """The selector's `rank`-th candidate, or every candidate within TIE_M of it (ask)."""
    pos = {n: np.asarray(state.objects[n].position) for n in names}
    key = {"left": lambda n: -pos[n][1], "right": lambda n: pos[n][1],
           "near": lambda n: float(np.linalg.norm(pos[n][:2])),
           "far": lambda n: -float(np.linalg.norm(pos[n][:2]))}[selector]
    ranked = sorted(names, key=key)
    pick = ranked[rank - 1]
    return [n for n in ranked if abs(key(n) - key(pick)) < TIE_M]


def _level(state: State, names: list[str], selector: str) -> list[str]:
    """The top or bottom cube of a stack (cubes on another cube / under another cube), or the
    middle of an odd row of candidates, left to right."""
    cubes = [n for n in names if state.cls(n) == "cube" and n in state.support]
    if selector == "top":
        return [n for n in cubes if state.support[n] in state.support and not state.on_top_of(n)]
    if selector == "bottom":
        return [n for n in cubes if state.support[n] not in state.support and state.on_top_of(n)]
    row = sorted(names, key=lambda n: -state.objects[n].position[1])
    return [row[len(row) // 2]] if len(row) % 2 == 1 and len(row) >= 3 else row


def _order(state: State):
    rank = {"cube": 0, "bowl": 1, "plate": 2, "drawer": 3}
    return lambda n: (rank.get(state.cls(n), 9), n)
