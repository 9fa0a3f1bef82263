"""From a person's instruction to goal conditions, in order.

"open the drawer and put the yellow cube inside, then close it" becomes the segments
[[open(drawer), in(yellow_cube, drawer)], [closed(drawer)]]: clauses joined by "and" or a
comma share a segment (the planner orders them), sequencing words ("then", "after that",
"finally", "next") start a new one, and so does a clause that undoes an earlier goal of the
same segment ("pick up the red cube and put it in the bowl"). Goals, not skills, are the
output: the planner chooses the minimal skills, so "put the red cube in the bowl" works
whether the cube is on the table, under another cube or already in hand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from embodia.brain.grounding import CLASS_WORDS, Grounder, Mention
from embodia.brain.outcomes import PHRASE_START, outcome_command, tower_command
from embodia.brain.refusal import Refusal
from embodia.brain.state import HAND, TABLE, ZONE, Literal, State, lit
from embodia.brain.verbs import VerbMapper

VERBS: tuple[tuple[str, str], ...] = (
    ("build a tower with", "tower"), ("build a tower out of", "tower"), ("build a tower from", "tower"),
    ("build a tower using", "tower"), ("make a tower with", "tower"), ("make a tower of", "tower"),
    ("make a stack of", "tower"), ("make a stack with", "tower"), ("make a pile of", "tower"),
    ("lift up", "pick"), ("hold onto", "pick"), ("hold on to", "pick"), ("pick out", "pick"), ("get hold of", "pick"), ("pick up", "pick"), ("pick", "pick"), ("grab", "pick"), ("lift", "pick"),
    ("take", "pick"), ("grasp", "pick"), ("hold", "pick"), ("raise", "pick"), ("fetch", "pick"),
    ("get", "pick"), ("snatch", "pick"), ("seize", "pick"), ("grip", "pick"), ("clutch", "pick"),
    ("hoist", "pick"), ("elevate", "pick"), ("collect", "pick"), ("retrieve", "pick"),
    ("put away", "put"), ("put", "put"), ("place", "put"), ("drop", "put"), ("set", "put"),
    ("move", "put"), ("deposit", "put"), ("release", "put"), ("transfer", "put"), ("bring", "put"),
    ("stow", "put"), ("store", "put"), ("load", "put"), ("toss", "put"), ("carry", "put"),
    ("insert", "put"), ("tuck", "put"), ("leave", "put"), ("stash", "put"), ("pop", "put"),
    ("stick", "put"), ("plonk", "put"), ("plop", "put"), ("chuck", "put"), ("dunk", "put"),
    ("park", "put"), ("shift", "put"), ("lay", "put"), ("stuff", "put"), ("hide", "put"),
    ("stack", "stack"), ("pile", "stack"), ("rest", "stack"),
    ("push", "push"), ("slide", "push"), ("shove", "push"), ("nudge", "push"), ("sweep", "push"),
    ("scoot", "push"), ("roll", "push"), ("drag", "push"),
    ("open up", "open"), ("close up", "close"), ("pull open", "open"), ("pull out", "open"), ("pull", "open"), ("draw", "open"), ("open", "open"),
    ("slip", "put"),
    ("yank open", "open"), ("yank", "open"), ("close", "close"), ("shut", "close"), ("slam", "close"),
    ("tidy up", "clear"), ("clean up", "clear"), ("clear", "clear"), ("tidy", "clear"),
    ("clean", "clear"), ("empty", "empty"),
)
POLITE = re.compile(r"^(?:(?:please|pls|plz|kindly|hey|ok|okay|could you|can you|would you mind|"
                    r"would you|will you|can u|could u|would u|will u|mind|i want you to|i need you to|i'd like you to|"
                    r"i would like you to|go ahead and|now|first|firstly|also|"
                    r"robot|and|then|just|you should|try to)\b\s*)+")
TRAILING = re.compile(r"(?:\s+(?:please|pls|plz|for me|now|as well|too|again|thanks|thank you|also|after it|"
                      r"after that|after|afterwards|first|at the end|in the end|if you can|if possible|when you can|instead|"
                      r"is how i want it|that's how i want it|is what i want|like that))+$")
# chunks that say nothing to do: the choice is left to the robot, or the request is summed up
FILLER = re.compile(r"^(?:i (?:don't|do not) care which(?: [\w' ]+)?|"
                    r"(?:it )?doesn't matter which(?: ones?)?|(?:it )?does not matter which(?: ones?)?|"
                    r"no matter which(?: ones?)?|(?:any|whichever) (?:one|two|three|ones|order)(?: is fine| will do| you like)?|"
                    r"(?:in )?any order(?: is fine| will do)?|either way(?: up| round| around)?|whichever|"
                    r"(?:the )?order (?:doesn't|does not) matter|"
                    r"that's (?:the goal|what i'm after|what i'm|what i want|it|all)|that is (?:the goal|all|it)|"
                    r"yo|hey there|go ahead|whatever|if you can|if you could|if possible|counting from (?:the )?(?:left|right)(?: to (?:the )?(?:left|right))?)$")
DONE = ("once that's done", "once that is done", "when that's done", "when that is done",
        "after that's done", "once you're done", "when you're done", "once you're finished",
        "when you're finished", "once you've got it", "once you have it", "when you've got it",
        "once finished", "once done", "when done", "before you")
SEQUENTIAL = ("then", "and then", "after that", "afterwards", "afterward", "finally",
              "and finally", "next", "lastly", "last", "and last", "after this", *DONE, ".", ";")
SPLIT = re.compile(r"\s*(,\s*and then|,\s*then|,\s*and|and then|and finally|after that|afterwards|"
                   r"afterward|after this|" + "|".join(DONE) + r"|finally|lastly|\bnext\b(?!\s+to\b)|\bthen\b|"
                   r"(?:and )?\blast\b(?=\s+(?:the|put|place|stack|push|drop|open|close)\b)|"
                   r"\band\b|[,.;])\s*")
# "do the same with the green one": the last sequenced part again, with another object
SAME = re.compile(r"^(?:do |repeat )?(?:the same|same|that|this|it|the same thing)(?: again)?\s+"
                  r"(?:with|for|to|using|on)\s+(?P<x>.+)$")
DEST_PREPS = r"on top of|inside of|inside|into|in to|onto|on|in|atop|over to|over|to|at|toward|towards"
DEST = re.compile(rf"\b({DEST_PREPS})\b")
PICK_DEST = re.compile(r"\b(to|into|onto|over to|toward|towards)\b")
PARTICLES = ("back in", "open", "opened", "shut", "closed", "out", "back", "up", "down", "away",
             "in", "inside", "there", "in there", "in it", "on it", "on top", "together")
LOCATION = ("held", "in", "on", "stowed")
MAX_INSTRUCTION_CHARS = 2000  # a person's request is a few sentences; a longer text is refused unread


@dataclass
class Clause:
    verb: str
    objects: str
    dest: str | None
    particles: set[str]
    text: str
    new_segment: bool
    inherited: bool = False


@dataclass
class Goals:
    """The goal literals of each sequenced part, and the grounding decisions made."""

    segments: list[list[Literal]]
    notes: list[str] = field(default_factory=list)

    def as_text(self) -> list[list[str]]:
        return [[str(g) for g in seg] for seg in self.segments]


# wordings whose parts the clause grammar reads once they are put in its order
REWRITES = [(re.compile(p), r) for p, r in (
    (r"^(.+?) shut away in (?:the )?drawer\b", r"\1 in the drawer, with the drawer shut"),
    (r"^(.+?),? after you (.+)$", r"\2, then \1"),  # "nudge X into the zone after you put Y in the bowl"
    (r" than (?:on|in) (?:the )?\w+\b", ""),  # "I'd rather have it in the bowl than on the plate"
    (r" (?:out of|off(?: of)?) (?:the )?\w+,? and (in|into|on|onto|inside) ", r" \1 "),  # "out of the drawer and in the bowl"
    # "every cube that isn't in the bowl yet should go in the bowl": those already there cost nothing
    (r" (?:that|which) (?:isn't|is not|aren't|are not) (?:already |yet )?(?:in|on) (the \w+)(?: yet| already)?\b(?=.*\b\1\b)", ""),
    # "the cube that isn't on the plate": every one but those there
    (r"\b(the|every|each|all the) (cubes?|blocks?|ones?) (?:that|which) (?:isn't|is not|aren't|are not) "
     r"((?:in|on) (?:the )?\w+)", r"\1 \2 except the ones \3"),
    (r"\b(the \w+ (?:one|cube|block)) with (?:it|them)\b", r"\1 too"),
    # "except red and blue": one exception list, not a second clause
    (r"\b(except(?: for)?|but not|other than|apart from|excluding) ((?:the )?\w+(?: one| cube| block)?) and "
     r"((?:the )?\w+(?: ones?| cubes?| blocks?)?)\b", r"\1 \2 or \3"),  # "..., and the yellow one with it"
    (r"\b(?:either|one|any) of the other (?:two|ones|cubes|blocks)\b", "a cube"),
    (r"\b(?:takes|take|gets|get) (?:its|their|that|the) (?:spot|place) (on|in)\b", r"goes \1"),
    (r"\b(?:furthest|farthest|further|farther|most|more) (?:to the )?(left|right)\b", r"\1most"),
    (r"^(?:i'd like|i want|i would like|let's have) (?:a|one) (stack|tower|pile) (of|with|from)\b", r"make a \1 \2"),
    (r"\byour (cube|block|one)\b", r"the held \1"),
    (r"\b(?:stack|pile|put|make)( .+?) (?:into|in|as) (?:one|a|a single) (?:tower|stack|pile)(?=$|,)", r"stack\1"),
    (r"^(?:i want |i'd like )?(?:all|both) (?:(?:two|three|four) )?(?:of )?(?:them |the cubes |cubes |blocks )?"
     r"(?:stacked(?: up)? )?(?:in|into|as) (?:one|a single|a) (?:tower|stack|pile)(?=$|,)", "stack all the cubes"),
    (r"\b(all|both) (?:two|three|four) (cubes|blocks)\b", r"all the \2"),
    (r"\bany (two|three) of the\b", r"\1 of the"), (r"\bany (two|three) (cubes|blocks)\b", r"\1 \2"),
    (r"^i don't mind which$|,? i don't mind which\b", ""),
    # "the red cube in the drawer, with the drawer shut": the drawer's state is a goal of its own
    (r",? with (the drawer|it) (?:left |being |kept )?(open|opened|closed|shut)\b", r", and the drawer \2"),
    # "the drawer open with the red cube in it"
    (r"\b(the drawer) (?:left |being |kept )?(open|opened|closed|shut)(?: at the end)?,? with (.+?) (?:in it|inside|in there)\b",
     r"\1 \2, and put \3 in the drawer"),
    (r"\b(?:the |that )?(cube|block|one)s? (?:that's |that is |which is )?on the (?:far |very )?(left|right)"
     r"(?: side| end| hand side)?\b", r"the \2most \1"),
    (r"\b(goes|go|can go|should go) (?:there|in there)\b", r"\1 in it"),
    (r"\bthe (cube|block|one) (?:that's|that is|which is) (\w+) from the (left|right)\b", r"the \2 \1 from the \3"),
    (r"\b(cube|block|one) (?:that's not|that is not|which is not|that isn't|which isn't) (?:the )?(\w+)(?: one)?\b",
     r"\1 other than the \2 one"),
    (r"^stack (?:them|they) all(?: up)?(?: (?:into|in|as) (?:one|a|a single) (?:tower|stack|pile))?$",
     "stack all the cubes"),
    (r"^(?:stack|pile) (?:all|every one) of them(?: up)?$", "stack all the cubes"),
    (r"\b(?:the )?drawer (?:needs|has to be|must be|wants) (opening|opened|open)\b", "open the drawer"),
    (r"\b(?:the )?drawer (?:needs|has to be|must be|wants) (closing|closed|shut|shutting)\b", "close the drawer"),
    (r"^(?:(?:at|by|in) the end,? )?(?:i'd rather|i would rather|i want|i'd like) (?:you )?(?:were |to be |are )?holding\b",
     "pick up"),
    (r"(^|, )(?:but|and|so|ok|okay|alright|right),? ", r"\1"),
    (r"\bthat (?=\w+ (?:one|cube|block)s?\b)", "the "),  # "that green one": a determiner, not a pronoun
    (r"\b(?:can|could|should|may|will) join (?:it|them)\b", "goes in it"),
    (r"^(.*\bdrawer\b.*?),? and (?:be|get|is) (closed|shut)(?: again)?(?: at the end)?$", r"\1, then close the drawer"),
    (r"^(.*\bdrawer\b.*?),? and (?:be|get|is) (?:open|opened)(?: again)?(?: at the end)?$", r"\1, then open the drawer"),
    (r"^keep (?:holding|hold of|a hold of) ", "pick up "),
    # "give the red cube a shove into the zone": the noun is the action
    (r"\bgive (.+?) a (?:good |little |quick |gentle |light |small )?(shove|push|nudge|shake|wipe|spin|clean|wash|"
     r"kick|lick|squeeze|rinse|tap|toss|lift|flip|twist)\b", r"\2 \1"),
    # the cube in hand, however it is said
    (r"\b(?:the (?:cube|block|one) (?:that )?(?:you're|you are|you've got|you have) (?:holding|got|in (?:your|the) hand)|"
     r"(?:what|whatever) (?:you're|you are) holding|(?:what|whatever) (?:you've got|you have) in (?:your|the) hand|"
     r"the (?:cube|block|one) in (?:your |the |my )?(?:hand|gripper))", "the held cube"),
    # "the bowl with the red one", "in there with it": company, not a second place
    (r"\b(in (?:the )?(?:\w+ )?(?:bowl|drawer)|in there|there|inside) with (?:the [\w ]+?|it|them|the others?)"
     r"(?=$|,|;| then\b| and\b)", r"\1"),
    (r"\s+instead of (?:the )?[\w ]+?(?=$|,|;)", ""),  # the place is what counts; the planner clears it
    # "put all the cubes in the bowl except the green one": the exception belongs to the cubes
    (r"^(?P<v>.*?\b(?:all|every|each)\b.*?)(?P<d> (?:in|into|on|onto|inside) (?:the )?\w+(?: \w+)?) "
     r"(?P<x>(?:except|but not|apart from|other than|excluding) .+)$", r"\g<v> \g<x>\g<d>"),
    (r",? counting from (?:the )?(?:left|right)(?: to (?:the )?(?:left|right))?,?", ""),
    (r"\bthe (cube|block|one) (?:that's |that is |which is )?(?:closest|nearest) (?:to )?(?:you|me|the robot)\b",
     r"the nearest \1"),
    (r"\b(?:closest|nearest) (?:to )?(?:you|me|the robot)\b", "nearest"),
    (r"\b(leave|keep) the drawer (open|opened|closed|shut),? with (.+?) (?:in it|inside|in there)\b",
     r"put \3 in the drawer, and \1 the drawer \2"),
    (r"^(?:i want |i'd like |put )?(?:all|both|the)? ?(?:(?:three|two|four) )?(?:of )?(?:the )?(?:cubes|blocks) "
     r"(?:in|into|as) (?:one|a single|a) (?:tower|stack|pile)(?=$|,)", "stack all the cubes"),
    # a stack's levels
    (r"\bthe (?:cube|block|one) (?:that's |that is |which is )?(?:on top of the (?:stack|pile|tower)|"
     r"(?:stacked |sitting )?on top)\b(?! of)", "the top cube"),
    (r"\bthe (?:cube|block|one) (?:underneath|below|at the bottom(?: of the (?:stack|pile|tower))?)\b", "the bottom cube"),
)]


def normalize(text: str) -> str:
    t = text.lower().replace("’", "'")
    t = re.sub(r"[!?\"]", " ", t)
    t = re.sub(r"\s+(?:—|–|--|-)\s+", ", ", t)  # a dash joins clauses like a comma
    t = re.sub(r"\s+", " ", t).strip().rstrip(".")
    for pattern, repl in REWRITES:
        t = pattern.sub(repl, t)
    return t


def split_clauses(text: str) -> list[tuple[str, bool]]:
    """Chunks with a flag: does this chunk start a new (sequenced) segment?"""
    parts = SPLIT.split(normalize(text))
    out: list[tuple[str, bool]] = []
    new = False
    for i, p in enumerate(parts):
        if i % 2 == 1:
            sep = p.strip(" ,")
            new = new or sep in SEQUENTIAL or p.strip() in SEQUENTIAL
            continue
        p = POLITE.sub("", p.strip())
        p = TRAILING.sub("", p).strip()
        if p and p not in ("thanks", "thank you", "cheers", "please", "pls", "ty", "ok", "okay") and not FILLER.match(p):
            out.append((p, new and bool(out)))
            new = False
    return out


def _verb(chunk: str) -> tuple[str | None, str]:
    for phrase, verb in VERBS:
        if chunk == phrase or chunk.startswith(phrase + " "):
            return verb, chunk[len(phrase):].strip()
    first, _, rest = chunk.partition(" ")
    if first.endswith("ing") and len(first) > 5:  # "(would you mind) putting ...": the verb's -ing form
        for stem in (first[:-3], first[:-4], first[:-3] + "e"):
            if any(phrase == stem or phrase.startswith(stem + " ") for phrase, _ in VERBS):
                return _verb(f"{stem} {rest}".strip())
    return None, chunk


def _strip_particles(rest: str) -> tuple[str, set[str]]:
    found: set[str] = set()
    changed = True
    while changed:
        changed = False
        for p in PARTICLES:
            if rest == p or rest.endswith(" " + p):
                found.add(p)
                rest = rest[: len(rest) - len(p)].strip()
                changed = True
    return rest, found


def _dest(verb: str, rest: str) -> tuple[str, str | None]:
    rest = re.sub(r"(?:\s+(?:away|back|over|down))+(?=\s+(?:in|into|inside|on|onto|to)\b)", "", rest)  # "tuck it away in"
    pattern = PICK_DEST if verb == "pick" else DEST
    matches = [m for m in pattern.finditer(rest)  # "the cube next to the bowl" is one object
               if not re.search(r"\b(?:next|close|closest|nearest)\s*$", rest[: m.start()])]
    rel = re.search(r"\b(?:that's|that is|which is|that are|which are)\b", rest)
    if rel is not None and any(x.start() < rel.start() for x in matches):  # "on the cube that's on the table"
        matches = [x for x in matches if x.start() < rel.start()]
    elif rel is not None:  # "the cube that's on the plate on the green one": the clause's own place comes first
        matches = [x for x in matches if x.start() > rel.end()][1:] or matches
    if not matches or verb in ("open", "close", "clear", "empty"):
        return rest, None
    onto = [x for x in matches if x.group(1) in ("onto", "on top of", "atop")] or [
        x for x in matches if x.group(1) == "on"]  # "stack the one in the bowl on the green cube"
    m = (onto or matches)[0] if verb == "stack" else matches[-1]  # "stack a on b on c": a chain
    obj, dest = rest[: m.start()].strip(), rest[m.end():].strip()
    if not obj and verb != "stack":
        return rest, None
    return obj, dest


CARRY = {"pick": "put", "stack": "put", "push": "put"}  # with a destination, each of these puts
LEADING_PARTICLE = re.compile(r"^(?:up|down|away|over|back|off|out)\s+(?=\S)")
NOT_VERBS = PHRASE_START | CLASS_WORDS | {"to", "in", "on", "into", "onto", "with", "from", "of",
                                                 "off", "at", "by", "if", "when", "once", "so", "is", "are",
                                                 "i", "you", "we", "me", "what", "which", "whichever", "who",
                                                 "there", "here", "go", "actually", "no", "yes", "not"}


def _unknown_verb(chunk: str, notes: list[str], verbs: VerbMapper | None) -> tuple[str | None, str]:
    """A chunk that starts with a word the lexicon lacks: read that word by meaning (a calibrated
    nearest-neighbour reading), refuse it as an action the robot has not got, or ask."""
    word, _, rest = chunk.partition(" ")
    if verbs is None or not rest or word in NOT_VERBS or not word.isalpha():
        return None, chunk
    if word.endswith("ly") and len(word) > 4:  # "carefully put ...": the adverb says how, not what
        verb, tail = _verb(rest)
        if verb is not None:
            return verb, tail
    rest = LEADING_PARTICLE.sub("", rest)
    to_place = _dest("put", rest)[1] is not None  # "plunk the cube in the bowl": any carrying verb puts
    r = verbs.read(word, merge=CARRY if to_place else None)
    if r.verb is None and r.confident:
        raise Refusal("unsupported", word, f"I cannot {word} things: my skills are pick, place, stack, "
                      "push, and opening or closing the drawer")
    verb = r.verb
    if not r.confident or verb is None:
        readings = [v for v in dict.fromkeys([r.verb, r.runner_up]) if v]
        raise Refusal("ambiguous", word, f"I do not know the verb {word!r}; did you mean "
                      + " or ".join(repr(v) for v in readings) + "?", readings=readings, role="verb")
    notes.append(f"'{word}' read as {verb} (nearest in meaning, margin {r.margin:.2f})")
    return verb, rest


def parse_clauses(text: str, verbs: VerbMapper | None = None, notes: list[str] | None = None) -> list[Clause]:
    """The clauses of an instruction; `verbs` reads a verb outside the lexicon by meaning."""
    clauses: list[Clause] = []
    notes = [] if notes is None else notes
    described = False
    text = tower_command(normalize(text)) or text  # a tower described level by level
    for chunk, new in _topics(split_clauses(text)):
        same = SAME.match(chunk)
        if same and clauses:
            clauses += _repeat_with(clauses, same["x"], chunk, new)
            continue
        verb, rest = _verb(chunk)
        # after a described outcome, a bare "X in Y" describes the next one ("I want the drawer
        # closed and the red cube on the plate")
        outcome = outcome_command(chunk, known_verb=verb is not None, first=not clauses or described)
        described = outcome is not None
        if outcome is not None:  # "I want the red cube in the bowl": the command that reaches it
            verb, rest = _verb(outcome)
        if verb is None:
            verb, rest = _unknown_verb(chunk, notes, verbs)
        to = re.match(r"^(?:and )?(?:into|onto|inside|in|on|to)\s+(?=\S)", chunk)
        if verb is None and to and clauses and clauses[-1].dest is None and not new:
            clauses[-1].dest = chunk[to.end():]  # "move the red cube off the plate and into the bowl"
            if clauses[-1].verb == "pick":
                clauses[-1].verb = "put"
            continue
        inherited = verb is None
        if verb is None:
            if not clauses:
                raise Refusal("unsupported", chunk, "I do not know what to do: no action I know "
                              "(pick, put, stack, push, open, close, clear)")
            verb = clauses[-1].verb
        rest, particles = _strip_particles(rest)
        if verb == "put" and chunk.startswith("put away"):
            particles.add("away")
        objects, dest = _dest(verb, rest)
        if verb == "open" and re.match(r"(?:pull|yank|draw)\b", chunk) and not re.match(
                r"(?:(?:the|that|this|its) )?(?:brown |wooden )?(?:drawer|cabinet|it)\b|(?:open|out)?$", rest):
            verb = "pick"  # "pull the green cube out of the bowl": the cube, not a drawer
        if verb == "pick" and particles & {"in there", "there", "in it", "inside"}:
            verb = "put"  # "get the red cube in there": carried, not just held
        if inherited and dest is None and not new and verb != "open" and verb != "close":
            prev = clauses[-1]
            prev.objects = f"{prev.objects} and {objects}" if prev.objects else objects
            prev.particles |= particles
            continue
        if inherited and dest is None and verb in ("put", "stack"):  # "..., then the blue one too"
            dest, particles = clauses[-1].dest, particles | clauses[-1].particles
        clauses.append(Clause(verb, objects, dest, particles, chunk, new, inherited))
    for a, b in zip(clauses, clauses[1:], strict=False):  # "put the red and the blue cube in the bowl"
        if (a.dest is None and b.inherited and b.dest is not None and a.verb in ("put", "stack")
                and not a.particles & {"in it", "inside", "in there", "there", "on it", "on top"}):
            a.dest = b.dest
    return _fold_picks(clauses)


GROUP_PRONOUNS = ("them", "both", "both of them", "all of them", "those", "these", "each of them",
                  "all", "them both")


TOPIC_PRONOUN = re.compile(r"\b(?:it|that one|that|this one|them)\b")


def _topics(chunks: list[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """"the cube on the left, push it into the zone": a phrase put first, then taken up by a
    pronoun in a command, is that command's object."""
    out: list[tuple[str, bool]] = []
    i = 0
    while i < len(chunks):
        chunk, new = chunks[i]
        if i + 1 < len(chunks) and (i == 0 or new) and not chunks[i + 1][1] and _verb(chunk)[0] is None:
            nxt, nxt_new = chunks[i + 1]
            verb, rest = _verb(nxt)
            if (verb not in (None, "open", "close") and TOPIC_PRONOUN.search(rest)
                    and chunk.split()[0] in PHRASE_START | {"whichever"}):
                topic = re.sub(r"^((?:the|that) (?:\w+ )?(?:cube|block|one)) (on|in|inside) ", r"\1 that's \2 ", chunk)
                out.append((nxt[: len(nxt) - len(rest)] + TOPIC_PRONOUN.sub(topic, rest, count=1), new or nxt_new))
                i += 2
                continue
        out.append((chunk, new))
        i += 1
    return out


def _fold_picks(clauses: list[Clause]) -> list[Clause]:
    """"pick up the red and the blue cube and put them in the bowl": holding both at once is not
    asked for (one hand, one cube), putting them is; the pick folds into the put."""
    out: list[Clause] = []
    for c in clauses:
        prev = out[-1] if out else None
        if (prev is not None and prev.verb == "pick" and prev.dest is None
                and c.verb in ("put", "stack") and c.objects in GROUP_PRONOUNS):
            out[-1] = Clause(c.verb, prev.objects, c.dest, c.particles, f"{prev.text} and {c.text}",
                             prev.new_segment)
            continue
        out.append(c)
    return out


def _repeat_with(clauses: list[Clause], objects: str, text: str, new: bool) -> list[Clause]:
    """The clauses of the last sequenced part again, each naming what its first clause named
    now naming `objects`; pronouns stay, so they follow the new object."""
    start = max((i for i, c in enumerate(clauses) if c.new_segment), default=0)
    named = clauses[start].objects
    return [Clause(c.verb, objects if c.objects == named else c.objects, c.dest, set(c.particles),
                   text, new and k == 0) for k, c in enumerate(clauses[start:])]


class InstructionParser:
    """Instruction + state -> `Goals`, or a `Refusal` naming the phrase that failed."""

    def __init__(self, grounder: Grounder | None = None,
                 max_chars: int = MAX_INSTRUCTION_CHARS, read_verbs: bool = True) -> None:
        if max_chars <= 0:
            raise ValueError(f"max_chars must be positive, got {max_chars!r}")
        self.grounder = grounder or Grounder()
        self.max_chars = max_chars
        # verbs outside the lexicon by meaning, with the grounder's encoder (loaded once, on first need)
        self.verbs = VerbMapper(VERBS, self.grounder.encoder) if read_verbs else None

    _clause_object: list[str] | None = None  # the clause being grounded: its objects

    def check_length(self, instruction: str) -> None:
        """Refuse a text past `max_chars` before any parsing: never planned, refused in microseconds."""
        if len(instruction) > self.max_chars:
            raise Refusal("unsupported", "", f"the instruction is {len(instruction)} characters long; "
                          f"at most {self.max_chars} are read")

    def goals(self, instruction: str, state: State) -> Goals:
        self.check_length(instruction)
        if not normalize(instruction):
            raise Refusal("unsupported", "", "the instruction is empty")
        notes: list[str] = []
        clauses = parse_clauses(instruction, self.verbs, notes)
        self._clause_object = None
        segments: list[list[Literal]] = [[]]
        mentions: list[tuple[str, list[str]]] = []  # (role, names) in order of mention
        for c in clauses:
            new_goals = self._clause_goals(c, state, notes, mentions)
            seg = segments[-1]
            if seg and (c.new_segment or any(_conflict(a, b) for a in seg for b in new_goals)):
                segments.append([])
                seg = segments[-1]
            for g in new_goals:
                if g not in seg:
                    seg.append(g)
        segments = _means_not_ends([s for s in segments if s])
        if not segments:
            raise Refusal("unsupported", instruction, "it asks for nothing I can do")
        if not re.search(r"\b(?:instead|swap|replace|rather)\b", instruction.lower()):
            _one_on_the_plate(segments, state)
        return Goals(segments, notes)

    # ------------------------------------------------------------------ clauses
    def _ground(self, text: str, state: State, notes: list[str], mentions: list,
                role: str, prefer: str | None = None) -> list[str]:
        many = re.fullmatch(r"(?:the )?(?:other|remaining|rest of the) (two|three|ones|cubes|blocks)", text.strip())
        if many and [ns for r, ns in mentions if r == "object"]:  # "the other three": every cube not named
            named = {n for r, ns in mentions if r == "object" for n in ns}
            left = sorted(n for n in state.cubes if n not in named)
            want = {"two": 2, "three": 3}.get(many[1], len(left))
            if len(left) != want or not left:
                raise Refusal("unknown", text, f"{len(left)} cube(s) are not named yet", self.grounder.present(state))
            notes.append(f"'{text}' = {', '.join(left)} (the cubes not named yet)")
            mentions.append((role, left))
            return left
        if role == "object" and not mentions and text.strip() in ("both", "both of them", "them both",
                                                                   "all of them", "them all", "them"):
            cubes = sorted(state.cubes)  # "both of them in the bowl" with nothing named yet: the scene's cubes
            if text.strip().startswith("both") and len(cubes) != 2 or text.strip() == "them":
                raise Refusal("unknown", text, "I do not know which cubes it means", self.grounder.present(state))
            mentions.append((role, cubes))
            return cubes
        other = re.fullmatch(r"(?:the )?(?:other|last|remaining|leftover|final) (?:one|cube|block)", text.strip())
        objects_before = [ns for r, ns in mentions if r == "object"]
        if other and objects_before:  # "the other one": the one of that class not named yet
            named = {n for ns in objects_before for n in ns}
            cls = state.cls(objects_before[-1][0])
            left = sorted(n for n in state.objects if state.cls(n) == cls and n not in named)
            if len(left) > 1:
                raise self.grounder.ambiguous(text, left, state)
            if not left:
                raise Refusal("unknown", text, f"there is no other {cls}", self.grounder.present(state))
            notes.append(f"'{text}' = {left[0]} (the {cls} not named yet)")
            mentions.append((role, left))
            return left
        held = sorted(c for c in state.cubes if state.support.get(c) == HAND)
        if (role == "object" and len(held) == 1 and not [ns for r, ns in mentions if r == "object"]
                and re.fullmatch(r"(?:that|this) (?:cube|block|one)", text.strip())):
            notes.append(f"'{text}' = {held[0]} (the cube in hand)")  # "stick that cube on the plate"
            mentions.append((role, held))
            return held
        m: Mention = self.grounder.parse(text)
        if m.quant == "pronoun":
            own = self._clause_object if role == "place" else None
            order = list(reversed(mentions))
            if role == "place" and prefer is None:  # "..., then the green one on top of that": the cube moved last
                order = [x for x in order if x[0] == "object"] + [x for x in order if x[0] != "object"]
            for r, names in order:
                if names == own:  # "stack the green one on top of that": not the green one itself
                    own = None
                    continue
                if prefer is None or any(state.cls(n) == prefer for n in names):
                    if role == "object" and r != "object" and prefer is None:
                        continue
                    notes.append(f"'{text}' = {', '.join(names)} (mentioned before)")
                    return names
            if role == "object" and prefer is None and len(held) == 1:  # "put it in the bowl" while holding one
                notes.append(f"'{text}' = {held[0]} (the cube in hand)")
                mentions.append((role, held))
                return held
            if role == "object" and not mentions and prefer is None and len(state.cubes) > 1:
                raise self.grounder.ambiguous(text, sorted(state.cubes), state)  # nothing named yet: ask
            raise Refusal("unknown", text, "I do not know what it refers to",
                          self.grounder.present(state))
        besides = tuple(self._clause_object or ()) if role == "place" else ()
        try:
            names = self.grounder.resolve(m, state, besides=besides)
        except Refusal as r:  # "stack the red cube on the red cube": it names itself, say so
            if r.kind != "unknown" or not besides:
                raise
            names = self.grounder.resolve(m, state)
        how = f" ({'; '.join(m.notes)})" if m.notes else ""
        if names not in ([ZONE], [TABLE]):
            notes.append(f"'{m.text}' -> {', '.join(names)}{how}")
        mentions.append((role, names))
        return names

    def _clause_goals(self, c: Clause, state: State, notes: list[str], mentions: list) -> list[Literal]:
        g = lambda text, role="object", prefer=None: self._ground(text, state, notes, mentions, role, prefer)  # noqa: E731
        if c.verb in ("open", "close") or (c.verb in ("push", "pick") and _drawer_words(c)):
            target = g(c.objects, "object", "drawer") if c.objects else ["drawer"]
            if target != ["drawer"]:
                raise Refusal("impossible", c.objects, f"only the drawer opens and closes, not the "
                              f"{', '.join(state.describe(n) for n in target)}")
            return [lit(_drawer_state(c), "drawer")]
        if c.verb == "clear":
            if c.objects and g(c.objects, "place") != [TABLE]:
                raise Refusal("unsupported", c.objects, "I can clear the table (putting every cube "
                              "away); to empty a container, say where its cubes should go")
            return [lit("stowed", cube) for cube in state.cubes]
        if c.verb == "empty":
            raise Refusal("unsupported", c.text, "emptying needs a destination: say where the "
                          "cubes should go (bowl, plate, drawer or onto another cube)")
        if not c.objects:
            raise Refusal("unknown", c.text, "which object? the instruction names none",
                          self.grounder.present(state))
        objects: list[str] = []
        for part in _conjuncts(c.objects):
            try:
                found = g(part)
            except Refusal as r:
                found = self._not_the_place(r, c, state, notes, mentions)
            objects += [o for o in found if o not in objects]
        self._clause_object = objects
        for o in objects:
            if state.cls(o) != "cube":
                raise Refusal("impossible", c.objects, f"the {state.describe(o)} is not something I "
                              "can grasp: pick, place, stack and push work on cubes (4 cm)")
        if c.verb == "tower" and c.dest is not None:
            c.verb = "stack"  # "build a tower with the red cube over the blue cube"
        if c.verb == "stack" and c.dest is None and len(objects) == 1 and c.particles & {"on it", "on top"}:
            below = next((ns for _, ns in reversed(mentions) if len(ns) == 1 and ns != objects
                          and state.cls(ns[0]) == "cube"), None)
            if below is not None:  # "then stack the red cube on it": the cube named before
                return [self._on(state, objects[0], below[0], c)]
        if c.verb == "tower" or (c.verb == "stack" and c.dest is None):
            if len(objects) < 2:
                raise Refusal("unknown", c.text, "stack it on what? name the cube to stack on")
            order = _tower_order(state, objects)
            notes.append(f"tower, bottom to top: {', '.join(order)}")
            return [lit("on", up, down) for down, up in zip(order, order[1:], strict=False)]
        if c.verb == "stack" and c.dest is not None:
            parts = [p for p in re.split(r"\s*\b(?:on top of|onto|on|atop)\b\s*(?!the (?:left|right)\b)", c.dest) if p]
            if re.search(r"\b(?:that's|that is|which is)\b", c.dest):  # "on the cube that's on the table"
                parts = [c.dest]
            parts = [re.sub(r"\bone$", "cube", p) for p in parts]  # "on the rightmost one": a cube
            chain = [objects] + [g(p, "place") for p in parts]
            goals = []
            for upper, lower in zip(chain, chain[1:], strict=False):
                if len(lower) != 1:
                    raise Refusal("ambiguous", c.dest, "stack on which one?")
                goals += [self._on(state, u, lower[0], c) for u in upper]
            return goals
        if c.dest is None:
            if c.verb == "push":
                return [lit("in", o, ZONE) for o in objects]
            if "away" in c.particles:
                return [lit("stowed", o) for o in objects]
            if c.verb == "put":
                below = self._cube_below(mentions, objects, c, state) if c.particles & {"on it", "on top"} else None
                if below is not None:  # "stack red on blue, then put the green cube on it"
                    return [self._on(state, o, below, c) for o in objects]
                if c.particles & {"inside", "in", "in there", "there", "in it", "on it", "on top"}:
                    dest = self._last_place(mentions, c, state)
                    return [self._to(state, o, dest, c) for o in objects]
                raise Refusal("unknown", c.text, "put it where? name a place: the bowl, the plate, "
                              "the drawer, the square, or another cube")
            if len(objects) > 1:
                raise Refusal("impossible", c.objects, "I hold one cube at a time "
                              f"(asked for {', '.join(state.describe(o) for o in objects)})")
            return [lit("held", objects[0])]
        below = self._cube_below(mentions, objects, c, state) if c.dest in ("it", "them", "both") else None
        if below is not None:  # "..., then put the green one on top of it": the cube moved last
            return [self._on(state, o, below, c) for o in objects]
        if c.dest in ("it", "there", "them"):
            dest = self._last_place(mentions, c, state)
        else:
            dests = g(c.dest, "place")
            if len(dests) != 1:
                raise Refusal("ambiguous", c.dest, "put it on which one?")
            dest = dests[0]
        return [self._to(state, o, dest, c) for o in objects]

    def _not_the_place(self, r: Refusal, c: Clause, state: State, notes: list[str], mentions: list) -> list[str]:
        """"stack the cube on the yellow one": the cube to move is not the one it goes on; if
        that leaves one reading, it is meant, else ask about the ones left."""
        if not (r.needs_clarification and c.dest) or c.dest in ("it", "them", "there"):
            raise r
        try:
            places = set(self._ground(c.dest, state, notes, list(mentions), "place"))
        except Refusal:
            raise r from None
        left = [x for x in r.readings if x not in {state.describe(n) for n in places}]
        if len(left) == len(r.readings):
            raise r
        names = [n for n in state.objects if state.describe(n) in left]
        if len(names) != 1:
            raise self.grounder.ambiguous(r.phrase, names, state)
        mentions.append(("object", names))
        notes.append(f"'{r.phrase}' = {names[0]} (the only one that is not where it goes)")
        return names

    @staticmethod
    def _cube_below(mentions: list, objects: list[str], c: Clause, state: State) -> str | None:
        """"on top of it/them" after a cube was moved: that cube (the top of what was built)."""
        if not re.search(r"\b(?:on top of|onto|on|atop) (?:it|them|both)\b|\bon top$", c.text):
            return None
        for role, names in reversed(mentions):
            if role == "object" and len(names) == 1 and state.cls(names[0]) == "cube" and names[0] not in objects:
                return names[0]
        return None

    def _last_place(self, mentions: list, c: Clause, state: State) -> str:
        for _, names in reversed(mentions):
            if len(names) == 1 and state.cls(names[0]) in ("bowl", "plate", "drawer"):
                return names[0]
        named = [n for n in state.objects if state.cls(n) in ("bowl", "plate", "drawer")
                 and re.search(rf"\b{state.cls(n)}\b", c.objects or "")]
        if len(named) == 1:  # "move the cube closest to the drawer into it"
            return named[0]
        raise Refusal("unknown", c.text, "put it where? no container was mentioned",
                      self.grounder.present(state))

    def _on(self, state: State, upper: str, lower: str, c: Clause) -> Literal:
        if state.cls(upper) != "cube":
            raise Refusal("impossible", c.text, f"only a cube can be stacked, not the {state.describe(upper)}")
        if state.cls(lower) != "cube":
            return self._to(state, upper, lower, c)
        if upper == lower:
            raise Refusal("impossible", c.text, f"cannot stack the {state.describe(upper)} on itself")
        return lit("on", upper, lower)

    def _to(self, state: State, obj: str, dest: str, c: Clause) -> Literal:
        if dest == TABLE:
            raise Refusal("impossible", c.dest or c.text, "no skill puts a cube down on the table; "
                          "I can put cubes in the bowl or the drawer, on the plate, on another "
                          "cube, or push them to the square")
        if dest == ZONE:
            return lit("in", obj, ZONE)
        cls = state.cls(dest)
        if cls == "cube":
            return self._on(state, obj, dest, c)
        if cls == "plate":
            return lit("on", obj, "plate")
        if cls in ("bowl", "drawer"):
            return lit("in", obj, dest)
        raise Refusal("impossible", c.dest or c.text, f"cannot put things in or on the {state.describe(dest)}")


def _one_on_the_plate(segments: list[list[Literal]], state: State) -> None:
    """The plate holds one cube: a second one asked onto it, while the person says nowhere
    else for the one already there, is refused rather than the first cube moved off unasked."""
    elsewhere = {g.fact.args[0] for seg in segments for g in seg if g.positive and g.fact.args
                 and g.fact.name in ("in", "on", "held", "stowed") and g.fact.args[-1] != "plate"}
    on_plate = set(state.on_top_of("plate"))
    for seg in segments:
        for g in seg:
            if g.positive and g.fact.name == "on" and g.fact.args[1] == "plate":
                there = sorted(on_plate - {g.fact.args[0]} - elsewhere)
                if there:
                    raise Refusal("impossible", "plate", f"the plate holds one cube and the "
                                  f"{state.describe(there[0])} is on it; say where the "
                                  f"{state.describe(there[0])} should go first")
        on_plate |= {g.fact.args[0] for g in seg if g.positive and g.fact.name == "on" and g.fact.args[1] == "plate"}
    for seg in segments:  # nothing is stacked onto a cube inside the drawer; moving it out is not asked
        for g in seg:
            base = g.fact.args[1] if g.positive and g.fact.name == "on" and len(g.fact.args) == 2 else None
            if base in state.support and state.base(base) == "drawer" and base not in elsewhere:
                raise Refusal("impossible", state.describe(base), f"the {state.describe(base)} is inside the "
                              "drawer, and nothing can be stacked on a cube in the drawer")


def _drawer_words(c: Clause) -> bool:
    """Is the clause's own object the drawer (not "the cube out of the drawer")?"""
    return bool(re.match(r"(?:the |that |this |its )?(?:brown |wooden )?(?:drawer|cabinet)\b",
                         c.objects)) and not c.dest


def _conjuncts(text: str) -> list[str]:
    """'the red cube and the blue cube' -> both phrases ('the red and blue cubes' stays whole
    when a part has no noun: 'the red' borrows the noun of the last part)."""
    x = re.search(r"\b(?:except(?: for)?|but not|other than|apart from|aside from|excluding|save for)\b", text)
    head, tail = (text[: x.start()], text[x.start():]) if x else (text, "")  # "except red and blue" stays one
    parts = [p.strip() for p in re.split(r"\s*(?:,\s*and|,|\band\b)\s*", head) if p.strip()]
    if tail and parts:
        parts[-1] = f"{parts[-1]} {tail}"
    return parts or [text]


def _drawer_state(c: Clause) -> str:
    if c.particles & {"shut", "closed", "in", "back in", "back"}:
        return "closed"
    if c.particles & {"open", "opened", "out"}:
        return "open"
    if c.verb == "close":
        return "closed"
    if c.verb == "push":  # pushing a drawer closes it
        return "closed"
    return "open"


def _means_not_ends(segments: list[list[Literal]]) -> list[list[Literal]]:
    """"grab the yellow cube and put it in the drawer": holding it is the way to the drawer, not
    a goal of its own (as one, the hand would be full when the drawer has to be opened)."""
    out = []
    for k, seg in enumerate(segments):
        later = [g for g in seg + (segments[k + 1] if k + 1 < len(segments) else [])
                 if g.positive and g.fact.name in ("in", "on")]
        kept = [g for g in seg if not (g.positive and g.fact.name == "held"
                                       and any(x.fact.args[0] == g.fact.args[0] for x in later))]
        if kept:
            out.append(kept)
    return out


def _conflict(a: Literal, b: Literal) -> bool:
    fa, fb = a.fact, b.fact
    if fa.args == ("drawer",) and fb.args == ("drawer",):
        return fa.name != fb.name
    same_cube = fa.args and fb.args and fa.args[0] == fb.args[0] and fa != fb
    if fa.name in LOCATION and fb.name in LOCATION and same_cube:
        return not {fa.name, fb.name} <= {"in", "stowed"} or fa.name == fb.name
    return False


def _tower_order(state: State, cubes: list[str]) -> list[str]:
    """Bottom-to-top order that reuses the longest stack already built among `cubes`."""
    chains = []
    for c in cubes:
        if state.support.get(c) in cubes:
            continue
        chain, top = [c], c
        while True:
            above = [x for x in state.on_top_of(top) if x in cubes]
            if len(above) != 1:
                break
            top = above[0]
            chain.append(top)
        chains.append(chain)
    chains.sort(key=lambda ch: (-len(ch), state.support.get(ch[0]) != TABLE, ch[0]))
    base = chains[0] if chains else []
    return base + [c for c in cubes if c not in base]
