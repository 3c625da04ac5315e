"""Natural-language queries for synthetic events: sentence templates and synonyms.

A query names some of an object's attributes (size, colour, shape) and its action, e.g.
"the small red circle slides to the left" or "a big blue square grows larger". Two
disjoint phrasing sets exist: the default one, and a held-out one (other sentence frames
and other verb phrases) used to test whether a model generalises beyond the wording it
was trained on. Attribute words (colours, shapes, sizes) are shared by both sets: they
are the world's vocabulary. Everything here is pure data plus one function:

    text, template = phrase_query({"size": "small", "colour": "red", "shape": "circle"},
                                  "move_left", None, rng, heldout=False)
"""

from collections.abc import Mapping

import numpy as np

from engine.errors import InputError

# Words for each attribute value (first = canonical). Shared by both phrasing sets.
SIZE_WORDS: dict[str, tuple[str, ...]] = {
    "small": ("small", "little", "tiny"),
    "large": ("large", "big"),
}
COLOUR_WORDS: dict[str, tuple[str, ...]] = {
    "red": ("red",),
    "green": ("green",),
    "blue": ("blue",),
    "yellow": ("yellow",),
    "purple": ("purple", "violet"),
    "orange": ("orange",),
    "white": ("white",),
}
SHAPE_WORDS: dict[str, tuple[str, ...]] = {
    "circle": ("circle", "disc", "round dot"),
    "square": ("square", "box", "block"),
    "triangle": ("triangle",),
    "star": ("star",),
    "ring": ("ring", "hoop"),
}

# Verb phrases per action, third person singular. `{target}` is a colour word.
# Actions whose target colour the query leaves unnamed use the `*_any` entries.
DEFAULT_VERBS: dict[str, tuple[str, ...]] = {
    "move_left": ("moves to the left", "slides to the left", "goes left", "moves left"),
    "move_right": ("moves to the right", "slides to the right", "goes right", "moves right"),
    "move_up": ("moves up", "rises", "goes upward", "floats up"),
    "move_down": ("moves down", "sinks", "goes downward", "drops down"),
    "appear": ("appears", "shows up", "fades in"),
    "disappear": ("disappears", "vanishes", "fades away"),
    "grow": ("grows larger", "grows", "gets bigger", "expands"),
    "shrink": ("shrinks", "gets smaller", "becomes smaller"),
    "spin": ("spins", "rotates", "spins around"),
    "bounce": ("bounces", "hops up and down", "jumps up and down"),
    "change_colour": ("turns {target}", "changes colour to {target}", "becomes {target}"),
    "change_colour_any": ("changes colour", "changes its colour"),
}
HELDOUT_VERBS: dict[str, tuple[str, ...]] = {
    "move_left": ("drifts leftward", "travels toward the left side", "heads left"),
    "move_right": ("drifts rightward", "travels toward the right side", "heads right"),
    "move_up": ("climbs", "travels toward the top", "heads upward"),
    "move_down": ("descends", "travels toward the bottom", "heads downward"),
    "appear": ("comes into view", "materialises", "pops into view"),
    "disappear": ("goes out of view", "fades out", "is no longer visible"),
    "grow": ("swells", "increases in size", "becomes bigger"),
    "shrink": ("contracts", "decreases in size", "gets tinier"),
    "spin": ("twirls", "turns around on the spot", "revolves in place"),
    "bounce": ("hops", "leaps up and down", "springs up and down"),
    "change_colour": ("switches to {target}", "is recoloured {target}", "takes on a {target} hue"),
    "change_colour_any": ("switches colour", "takes on a new colour"),
}

# Sentence frames: `{subject}` is a noun phrase with its determiner, `{verb}` a verb phrase.
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "{subject} {verb}",
    "{subject} {verb} on the screen",
    "in the video, {subject} {verb}",
    "the moment when {subject} {verb}",
    "{subject} {verb} in the scene",
)
HELDOUT_TEMPLATES: tuple[str, ...] = (
    "watch as {subject} {verb}",
    "a clip where {subject} {verb}",
    "there is a point where {subject} {verb}",
    "find when {subject} {verb}",
    "the part in which {subject} {verb}",
)
DETERMINERS: tuple[str, ...] = ("the", "a")

ATTRIBUTE_ORDER: tuple[str, ...] = ("size", "colour", "shape")  # English adjective order
_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "size": SIZE_WORDS,
    "colour": COLOUR_WORDS,
    "shape": SHAPE_WORDS,
}


def attribute_words(attribute: str, value: str) -> tuple[str, ...]:
    """Every word that names `value` of `attribute` ("size", "colour" or "shape")."""
    try:
        return _WORDS[attribute][value]
    except KeyError as e:
        raise InputError(f"no words for {attribute} {value!r}") from e


def verb_phrases(action: str, target_named: bool, heldout: bool) -> tuple[str, ...]:
    """The verb phrases (templates with `{target}`) one phrasing set has for `action`."""
    table = HELDOUT_VERBS if heldout else DEFAULT_VERBS
    key = "change_colour_any" if action == "change_colour" and not target_named else action
    if key not in table:
        raise InputError(f"no phrasing for action {action!r}; known: {', '.join(sorted(table))}")
    return table[key]


def _pick(options: tuple[str, ...], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def noun_phrase(named: Mapping[str, str], rng: np.random.Generator) -> str:
    """Determiner plus the named attributes in size-colour-shape order ("the small red disc")."""
    if "shape" not in named:
        raise InputError("a query must name the object's shape")
    words = [_pick(attribute_words(a, named[a]), rng) for a in ATTRIBUTE_ORDER if a in named]
    determiner = _pick(DETERMINERS, rng)
    return " ".join([determiner, *words])


def phrase_query(
    named: Mapping[str, str],
    action: str,
    target_colour: str | None,
    rng: np.random.Generator,
    heldout: bool = False,
) -> tuple[str, str]:
    """(query text, sentence template used) for an object with attributes `named` doing
    `action`; `target_colour` is named in the text when given (change_colour only)."""
    subject = noun_phrase(named, rng)
    verb = _pick(verb_phrases(action, target_colour is not None, heldout), rng)
    if target_colour is not None:
        verb = verb.format(target=_pick(attribute_words("colour", target_colour), rng))
    template = _pick(HELDOUT_TEMPLATES if heldout else DEFAULT_TEMPLATES, rng)
    return template.format(subject=subject, verb=verb), template
