"""Synthetic text for the miniature DogeRM world: general facts, worked arithmetic and reversed word lists.

Every text is lower-case words, numbers and punctuation separated by single spaces, so a word-level
tokenizer round-trips it exactly. Numbers are single tokens in ``0..MAX_NUMBER``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_NUMBER = 60
"""Largest number token; every operand, intermediate and result of a problem lies in ``0..MAX_NUMBER``."""

MAX_OPERAND = 20
"""Operands are drawn from ``0..MAX_OPERAND - 1``."""


@dataclass(frozen=True)
class Relation:
    """One family of general facts: ``subject -> object``, with its phrasing."""

    name: str
    question: str  # with "{s}"
    statement: str  # with "{s}" and "{o}"
    facts: tuple[tuple[str, str], ...]

    @property
    def objects(self) -> list[str]:
        """Distinct objects, in first-seen order (the pool wrong answers are drawn from)."""
        return list(dict.fromkeys(o for _, o in self.facts))


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(item.split(":")) for item in text.split())  # type: ignore[misc]


RELATIONS: tuple[Relation, ...] = (
    Relation(
        "capital",
        "what is the capital of {s} ?",
        "the capital of {s} is {o} .",
        _pairs(
            "france:paris spain:madrid italy:rome germany:berlin japan:tokyo china:beijing egypt:cairo "
            "kenya:nairobi peru:lima chile:santiago canada:ottawa russia:moscow greece:athens norway:oslo "
            "sweden:stockholm poland:warsaw austria:vienna ireland:dublin portugal:lisbon cuba:havana "
            "india:delhi iran:tehran iraq:baghdad turkey:ankara brazil:brasilia thailand:bangkok "
            "vietnam:hanoi korea:seoul finland:helsinki denmark:copenhagen hungary:budapest "
            "belgium:brussels ghana:accra nigeria:abuja morocco:rabat colombia:bogota venezuela:caracas "
            "australia:canberra"
        ),
    ),
    Relation(
        "colour",
        "what colour is a {s} ?",
        "a {s} is {o} .",
        _pairs(
            "banana:yellow grass:green sky:blue snow:white coal:black tomato:red lemon:yellow "
            "cherry:red leaf:green ocean:blue milk:white crow:black carrot:orange pumpkin:orange "
            "cucumber:green sun:yellow strawberry:red chocolate:brown coffee:brown salt:white ink:black "
            "lime:green flamingo:pink violet:purple plum:purple sapphire:blue ruby:red emerald:green "
            "cloud:white corn:yellow pig:pink grape:purple walnut:brown tangerine:orange raven:black"
        ),
    ),
    Relation(
        "sound",
        "what sound does a {s} make ?",
        "a {s} says {o} .",
        _pairs(
            "dog:woof cat:meow cow:moo pig:oink sheep:baa duck:quack horse:neigh lion:roar snake:hiss "
            "bee:buzz wolf:howl owl:hoot hen:cluck frog:croak mouse:squeak sparrow:chirp donkey:bray "
            "goat:bleat"
        ),
    ),
    Relation(
        "legs",
        "how many legs does a {s} have ?",
        "a {s} has {o} legs .",
        _pairs(
            "spider:8 ant:6 bee:6 dog:4 cat:4 horse:4 cow:4 sparrow:2 snake:0 fish:0 octopus:8 crab:10 "
            "duck:2 hen:2 beetle:6 lion:4 worm:0 kangaroo:2 penguin:2 scorpion:8 fly:6 goat:4 owl:2 "
            "whale:0 starfish:5"
        ),
    ),
    Relation(
        "opposite",
        "what is the opposite of {s} ?",
        "the opposite of {s} is {o} .",
        _pairs(
            "hot:cold big:small up:down fast:slow day:night happy:sad old:young tall:short open:closed "
            "wet:dry full:empty early:late high:low hard:soft rich:poor strong:weak loud:quiet first:last "
            "win:lose left:right in:out good:bad near:far thick:thin clean:dirty heavy:light above:below "
            "before:after"
        ),
    ),
    Relation(
        "home",
        "where does a {s} live ?",
        "a {s} lives in the {o} .",
        _pairs(
            "camel:desert whale:ocean monkey:jungle bear:forest cow:farm penguin:ice shark:ocean "
            "parrot:jungle deer:forest pig:farm lizard:desert seal:ice dolphin:ocean tiger:jungle "
            "squirrel:forest sheep:farm scorpion:desert walrus:ice bat:cave trout:river otter:river"
        ),
    ),
    Relation(
        "young",
        "what is a baby {s} called ?",
        "a baby {s} is called a {o} .",
        _pairs(
            "dog:puppy cat:kitten cow:calf sheep:lamb horse:foal frog:tadpole duck:duckling goat:kid "
            "bear:cub kangaroo:joey swan:cygnet goose:gosling deer:fawn hen:chick"
        ),
    ),
)

ANSWER = "the answer is {a} ."
TRUE, FALSE = "true", "false"
"""Verdict words that follow judged answers in the pretraining corpus and the domain SFT (never in RM or eval data)."""
GOOD, BAD = "good", "bad"
"""Marks on graded arithmetic in pretraining ("... the answer is 9 . good"); never in SFT, RM or eval data."""
EXTRA_WORDS = "let ' s think step by step"
"""Words of the Best-of-N prefix "Let's think step by step." (kept in the vocabulary so it is never unknown)."""
OPERATIONS = ("+", "-")


@dataclass(frozen=True)
class Fact:
    """A general fact: relation, subject and its correct object."""

    relation: Relation
    subject: str
    obj: str

    @property
    def question(self) -> str:
        """The question asking for the object."""
        return self.relation.question.format(s=self.subject)

    def answer(self, obj: str | None = None) -> str:
        """A worked answer naming ``obj`` (the correct object by default)."""
        o = self.obj if obj is None else obj
        return self.relation.statement.format(s=self.subject, o=o) + " " + ANSWER.format(a=o)


def all_facts() -> list[Fact]:
    """Every general fact, in a fixed order."""
    return [Fact(r, s, o) for r in RELATIONS for s, o in r.facts]


def rm_only_facts(rng: random.Random) -> list[Fact]:
    """Facts no pretraining or SFT text states: each animal of ``home`` that ``sound`` lacks asked the ``sound``
    question and vice versa, its object drawn at random (knowledge only the RM's preference data teaches)."""
    by_name = {r.name: r for r in RELATIONS}
    home, sound = by_name["home"], by_name["sound"]
    home_subjects, sound_subjects = [s for s, _ in home.facts], [s for s, _ in sound.facts]
    facts = [Fact(sound, s, rng.choice(sound.objects)) for s in home_subjects if s not in sound_subjects]
    return facts + [Fact(home, s, rng.choice(home.objects)) for s in sound_subjects if s not in home_subjects]


def wrong_objects(fact: Fact) -> list[str]:
    """Objects of the same relation that are wrong for ``fact``'s subject."""
    return [o for o in fact.relation.objects if o != fact.obj]


@dataclass(frozen=True)
class Problem:
    """An arithmetic problem: ``operands[0] ops[0] operands[1] (ops[1] operands[2])``."""

    operands: tuple[int, ...]
    ops: tuple[str, ...]

    @property
    def question(self) -> str:
        """The question text, e.g. ``what is 7 + 5 - 3 ?``."""
        expr = str(self.operands[0]) + "".join(f" {op} {n}" for op, n in zip(self.ops, self.operands[1:]))
        return f"what is {expr} ?"

    def results(self) -> list[int]:
        """The correct result of every step."""
        out, acc = [], self.operands[0]
        for op, n in zip(self.ops, self.operands[1:]):
            acc = apply(op, acc, n)
            out.append(acc)
        return out

    @property
    def result(self) -> int:
        """The correct final result."""
        return self.results()[-1]

    def worked(self, results: list[int]) -> str:
        """A worked answer with the given step results (correct or not); the answer is the last one."""
        steps, acc = [], self.operands[0]
        for op, n, r in zip(self.ops, self.operands[1:], results):
            steps.append(f"{acc} {op} {n} = {r} .")
            acc = r
        return " ".join(steps) + " " + ANSWER.format(a=results[-1])

    def gsm8k_answer(self) -> str:
        """The GSM8K-style answer: the correct worked steps, then ``#### <result>``."""
        steps, acc = [], self.operands[0]
        for op, n, r in zip(self.ops, self.operands[1:], self.results()):
            steps.append(f"{acc} {op} {n} = {r} .")
            acc = r
        return " ".join(steps) + f"\n#### {self.result}"


def apply(op: str, a: int, b: int) -> int:
    """``a op b`` for ``op`` in ``+`` / ``-``."""
    return a + b if op == "+" else a - b


def _in_range(values: list[int]) -> bool:
    return all(0 <= v <= MAX_NUMBER for v in values)


def random_problem(rng: random.Random) -> Problem:
    """A one- or two-step problem whose every step result lies in ``0..MAX_NUMBER``."""
    while True:
        n_ops = rng.choice((1, 2))
        operands = tuple(rng.randrange(MAX_OPERAND) for _ in range(n_ops + 1))
        ops = tuple(rng.choice(OPERATIONS) for _ in range(n_ops))
        problem = Problem(operands, ops)
        if _in_range(problem.results()):
            return problem


def wrong_results(problem: Problem, rng: random.Random) -> tuple[list[int], str]:
    """Step results with one wrong step (off by one, or the other operation), later steps recomputed from it.

    Returns the results and the kind of error (``off-by-one`` or ``wrong-operation``); the final answer
    always differs from the correct one.
    """
    correct = problem.results()
    while True:
        k = rng.randrange(len(problem.ops))
        kind = rng.choice(("off-by-one", "wrong-operation"))
        prev = problem.operands[0] if k == 0 else correct[k - 1]
        if kind == "off-by-one":
            bad = correct[k] + rng.choice((-1, 1))
        else:
            other = "-" if problem.ops[k] == "+" else "+"
            bad = apply(other, prev, problem.operands[k + 1])
        results = correct[:k] + [bad]
        acc = bad
        for op, n in zip(problem.ops[k + 1 :], problem.operands[k + 2 :]):
            acc = apply(op, acc, n)
            results.append(acc)
        if _in_range(results) and results[-1] != correct[-1]:
            return results, kind


def noisy_results(problem: Problem, rng: random.Random, p_correct: float) -> list[int]:
    """Step results that are each correct with probability ``p_correct``, else a random in-range number."""
    out, acc = [], problem.operands[0]
    for op, n in zip(problem.ops, problem.operands[1:]):
        acc = apply(op, acc, n) if rng.random() < p_correct else rng.randrange(MAX_NUMBER + 1)
        out.append(acc)
    return out


STRING_ITEMS = ("red", "blue", "green", "yellow", "white", "black", "orange", "brown", "pink", "purple")
"""Words the second domain's lists are made of (already in the vocabulary, so the tokenizer and base are unchanged)."""
STRING_LENGTHS = (3, 4, 5)
STRING_QUESTION = "what is the last first of {items} ?"
STRING_STATEMENT = "the last first of {items} is {out} ."


@dataclass(frozen=True)
class StringTask:
    """The second domain's skill: a list of distinct words, to be given back last word first."""

    items: tuple[str, ...]

    @property
    def question(self) -> str:
        """The question text, e.g. ``what is the last first of red blue green ?``."""
        return STRING_QUESTION.format(items=" ".join(self.items))

    def results(self) -> list[str]:
        """The correct answer: the items reversed."""
        return list(reversed(self.items))

    def worked(self, out: list[str]) -> str:
        """An answer giving ``out`` (correct or not), phrased like a fact's answer."""
        joined = " ".join(out)
        return STRING_STATEMENT.format(items=" ".join(self.items), out=joined) + " " + ANSWER.format(a=joined)


def random_string_task(rng: random.Random) -> StringTask:
    """A list of 3 to 5 distinct words from ``STRING_ITEMS``."""
    return StringTask(tuple(rng.sample(STRING_ITEMS, rng.choice(STRING_LENGTHS))))


def wrong_reversal(task: StringTask, rng: random.Random) -> tuple[list[str], str]:
    """A wrong answer and its kind: two neighbours swapped (``swap``), one word replaced by a word not in the list
    (``wrong-word``), or the list given back unreversed (``copy``)."""
    out = task.results()
    kind = rng.choice(("swap", "wrong-word", "copy"))
    if kind == "swap":
        k = rng.randrange(len(out) - 1)
        out[k], out[k + 1] = out[k + 1], out[k]
    elif kind == "wrong-word":
        out[rng.randrange(len(out))] = rng.choice([w for w in STRING_ITEMS if w not in task.items])
    else:
        out = list(task.items)
    return out, kind


def vocabulary() -> list[str]:
    """Every word, number and punctuation token the synthetic texts use (special tokens excluded)."""
    words: dict[str, None] = {}
    texts = [r.question + " " + r.statement for r in RELATIONS]
    texts += [ANSWER, EXTRA_WORDS, TRUE, FALSE, "what is ? = + - ####"]
    for r in RELATIONS:
        texts += [f"{s} {o}" for s, o in r.facts]
    for text in texts:
        for w in text.replace("{s}", " ").replace("{o}", " ").replace("{a}", " ").split():
            words[w] = None
    for n in range(MAX_NUMBER + 1):
        words[str(n)] = None
    return list(words)
