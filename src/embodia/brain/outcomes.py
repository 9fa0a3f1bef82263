"""Goals stated as outcomes, read as the command that reaches them.

People often describe the end state instead of the action: "I want the red cube in the bowl",
"the bowl should end up with the green cube", "make sure the drawer is closed", "leave the
drawer open", or just "red cube in the bowl". Each becomes the equivalent command ("put the
red cube in the bowl", "close the drawer"), whose goal literal the planner then solves from
the current scene, so an outcome that already holds costs no steps. The forms are sentence
structure (who should be where), not a verb list: the object and place phrases go to the
grounder unchanged.
"""

from __future__ import annotations

import re

from embodia.brain.grounding import COLOURS, INDEFINITE, PRONOUNS, SELECTORS, SHADES, UNIVERSAL

WANT = re.compile(r"^(?:(?:by|at|in) the end,?\s+|(?:final|end|goal|target) (?:state|result):?\s+|result:\s+|"
                  r"what i (?:want|need|'d like):\s+|what i(?:'m| am) after is\s+|i(?:'d| would) like to see\s+|"
                  r"i want to see\s+|"
                  r"what i (?:really |actually )?(?:want|need) is\s+|"
                  r"(?:i|we)(?:'d| would)? (?:like|want|need) to end up with\s+)?"
                  r"(?:(?:i want|i'd like|i would like|i need|we want|we need|we'd like|let's have|"
                  r"i'd rather have|i would rather have|i'd prefer|i would prefer|"
                  r"make sure|ensure|see that|see to it that|check that)\s+(?:that\s+)?)?")
KEEP_DRAWER = re.compile(r"^(?:leave|keep|have|get)\s+(?P<d>(?:the |that )?drawer|it)\s+"
                         r"(?P<s>open|opened|closed|shut)$")
DRAWER_STATE = re.compile(r"^(?P<d>(?:the |that )?drawer)\s+(?:should|must|needs to|has to|is to|"
                          r"ought to)?\s*(?:be|end up|stay|remain|is|to be|left|kept)?\s*"
                          r"(?P<s>open|opened|closed|shut)$")
BE = (r"(?P<be>(?:should|must|needs to|has to|is to|ought to|will|to)?\s*"
      r"(?:be|end up|stay|remain|go|goes|is|are|sit|sits|lie|lies|rest|rests|can go|could go)?\s*"
      r"(?:placed|put|sitting|lying|resting|stored|kept|stacked|set|left)?)")
PLACE_PREP = r"inside of|inside|into|in|on top of|onto|on|atop"
WHERE = re.compile(rf"^(?P<x>.+?)\s+{BE}\s*\b(?P<p>{PLACE_PREP})\b\s+(?P<y>.+)$")
GOES_IN = re.compile(r"^(?P<x>.+?) (?:goes|go|should go|can go) (?:in|inside|in there)$")
# with a verb of motion the place follows it: "every cube on the table goes in the bowl"
WHERE_GOES = re.compile(rf"^(?P<x>.+?)\s+(?P<be>(?:should |must |needs to |has to |can |could |will )?"
                        rf"(?:goes|go|belongs|belong|end up|ends up))\s+\b(?P<p>{PLACE_PREP})\b\s+(?P<y>.+)$")
HOLDS = re.compile(r"^(?P<y>.+?)\s+(?:should|must|needs to|has to|is to|ought to|to)?\s*"
                   r"(?:end up with|end up holding|end up containing|contain|hold|have|get)\s+(?P<x>.+?)"
                   r"(?:\s+(?:on it|in it|inside|inside it|on top))?$")
CONTAINED_IN = ("bowl", "drawer")
# how an object phrase can begin: a bare "X in Y" whose X starts otherwise ("pop the cube in the
# bowl") is an unknown verb, refused as one, not an object named "pop the cube"
PHRASE_START = ({"the", "my", "one", "two", "three", "cube", "block", "cubes", "blocks"} | INDEFINITE | UNIVERSAL | PRONOUNS | SHADES
                | set(SELECTORS) | {w for ws in COLOURS.values() for w in ws})


def outcome_command(chunk: str, known_verb: bool, first: bool) -> str | None:
    """The command a described outcome asks for, or None when `chunk` is not one.

    `known_verb`: the chunk starts with a lexicon verb, so only the drawer's state after
    "leave"/"keep" applies. `first`: no clause comes before it; a bare "X in Y" (no "I want",
    no "should be") is read as an outcome only then, since after a command it continues that
    command ("put the red and the blue cube in the bowl").
    """
    m = KEEP_DRAWER.match(chunk)
    if m:
        return _drawer(m["s"], m["d"])
    if known_verb:
        return None
    wanted = WANT.sub("", chunk)
    explicit = wanted != chunk
    m = DRAWER_STATE.match(wanted)
    if m:
        return _drawer(m["s"], m["d"])
    m = HOLDS.match(wanted)
    if m and any(w in m["y"].split() for w in ("bowl", "plate", "drawer")):
        prep = "in" if any(w in m["y"].split() for w in CONTAINED_IN) else "on"
        return f"put {m['x']} {prep} {m['y']}"
    m = GOES_IN.match(wanted)
    if m and m["x"].split()[0] in PHRASE_START:  # "blue cube goes in": into the place named before
        return f"put {m['x']} in it"
    m = WHERE_GOES.match(wanted) or WHERE.match(wanted)
    if m and (explicit or m["be"].strip() or first) and m["x"].split()[0] in PHRASE_START:
        return f"put {m['x']} {m['p']} {m['y']}"
    return None


TOWER = re.compile(r"^(?:let's |please )?(?:make|build|create) (?:me )?(?:a |an )?(?:little |small |tiny )?"
                   r"(?:tower|stack)\s*(?::|,|-|with|where)?\s*(?P<bottom>.+?) (?:at|on|goes at|goes on) "
                   r"the bottom,?(?: and)?(?: then)?(?: (?P<middle>.+?) in the middle,?(?: and)?(?: then)?)?"
                   r" (?P<top>.+?) (?:on top|at the top|goes on top)(?: of it| of that| of them)?$")


BOTTOM = re.compile(r"^(?:.*(?::|\bwith|\bwant|\blike|\bhave|\btower|\bstack|\bpile)(?: please)?,?\s+)?(?P<bottom>[^,:]+?) "
                    r"(?:at|on|goes at|goes on|is at|on the) (?:the )?(?:bottom|base),?\s*(?P<rest>.+)$")
TOP = re.compile(r"^(?P<levels>.*?)\s*(?P<top>(?:(?! and | then )[^,])+?) (?:on top|at the top|goes on top|is on top|at the very top)"
                 r"(?: of (?:it|that|them|those|the rest|(?:the )?\w+(?: one| cube| block)?))?$")
LEVEL_SPLIT = re.compile(r"\s*(?:,\s*(?:and\s+)?(?:then\s+)?|\s+and\s+(?:then\s+)?|\s+then\s+)\s*")
LEVEL_TAIL = re.compile(r"\s+(?:on it|on that|on top of it|on top of that|above it|in the middle|next|after that)$")


def tower_command(text: str) -> str | None:
    """"make a tower: green block at the bottom, blue block on top of it" -> "stack the blue
    block on the green block": a tower described level by level ("X at the bottom, then Y,
    Z on top"; "I want red at the bottom, green on it and blue on top"), one stacking chain."""
    b = BOTTOM.match(text)
    t = TOP.match(b["rest"].strip(" ,")) if b else None
    if t is None and b is not None and re.search(r"\b(?:tower|stack|pile)\b", text[: b.start("bottom")]):
        # "a tower: red on the bottom, then yellow, then green": the levels in order, bottom first
        lead = re.compile(r"^(?:and then|then|and|next)\s+")
        above = [lead.sub("", LEVEL_TAIL.sub("", x.strip())).strip()
                 for x in LEVEL_SPLIT.split(b["rest"].strip(" ,")) if x.strip(" ,")]
        levels = [*reversed(above), b["bottom"].strip()]
        if len(levels) < 2 or any(not lv or lv.split()[0] in ("put", "stack", "place") for lv in levels):
            return None
    elif t is not None:
        lead = re.compile(r"^(?:and then|then|and)\s+")
        middle = [lead.sub("", LEVEL_TAIL.sub("", x.strip())).strip()
                  for x in LEVEL_SPLIT.split(t["levels"].strip(" ,")) if x.strip(" ,")]
        top = lead.sub("", t["top"].strip())
        levels = [top, *reversed(middle), b["bottom"].strip()]
        if any(not lv or lv.split()[0] in ("put", "stack", "place") or "," in lv for lv in levels):
            return None
    else:
        m = TOWER.match(text)
        if m is None:
            return None
        levels = [m["top"], *([m["middle"]] if m["middle"] else []), m["bottom"]]
    levels = [lv if lv.split()[0] in PHRASE_START else f"the {lv}" for lv in levels]
    return "stack " + " on ".join(levels)


def _drawer(state: str, drawer: str) -> str:
    return f"{'open' if state.startswith('open') else 'close'} {drawer}"
