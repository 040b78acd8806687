"""A toy world: templated English with parallel French and German, from a seed.

The quickstart needs a language small enough for a tiny LLM to learn on a CPU
in minutes, yet real enough that translating it is more than copying words:
French puts colour adjectives after the noun and makes articles and adjectives
agree in gender; German inflects the article and the adjective for gender and
case (nominative subject, accusative object, dative after a place preposition)
and conjugates verbs. Every sentence is built by one template in all three
languages at once, so the translations are right by construction. French nouns
and verbs start with a consonant (no elision: "le", "la", "je" stay whole), and
"près de" contracts with "le" to "près du". English is plain words that
espeak-ng can say (no digits, no abbreviations).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

Gender = Literal["m", "f", "n"]

# --- lexicon ------------------------------------------------------------------


@dataclass(frozen=True)
class Noun:
    en: str
    fr: str
    fr_gender: Literal["m", "f"]
    de: str
    de_gender: Gender


@dataclass(frozen=True)
class Adjective:
    en: str
    fr_m: str
    fr_f: str
    fr_before_noun: bool
    """petit, grand, vieux, jeune, beau go before the noun; the rest after."""
    de: str
    """The stem; attributive endings are added after the definite article."""


@dataclass(frozen=True)
class Verb:
    """Present tense forms for I / he, she / we / they."""

    en: tuple[str, str]
    """Base form (I, we, they) and third person singular."""
    fr: tuple[str, str, str, str]
    de: tuple[str, str, str, str]


def _n(
    en: str, fr: str, fr_gender: Literal["m", "f"], de: str, de_gender: Gender
) -> Noun:
    return Noun(en, fr, fr_gender, de, de_gender)


NOUNS: Final = (
    _n("dog", "chien", "m", "Hund", "m"),
    _n("cat", "chat", "m", "Katze", "f"),
    _n("horse", "cheval", "m", "Pferd", "n"),
    _n("pigeon", "pigeon", "m", "Taube", "f"),
    _n("mouse", "souris", "f", "Maus", "f"),
    _n("cow", "vache", "f", "Kuh", "f"),
    _n("brother", "frère", "m", "Bruder", "m"),
    _n("girl", "fille", "f", "Mädchen", "n"),
    _n("king", "roi", "m", "König", "m"),
    _n("woman", "femme", "f", "Frau", "f"),
    _n("baby", "bébé", "m", "Baby", "n"),
    _n("teacher", "professeur", "m", "Lehrer", "m"),
    _n("doctor", "médecin", "m", "Arzt", "m"),
    _n("baker", "boulanger", "m", "Bäcker", "m"),
    _n("ball", "balle", "f", "Ball", "m"),
    _n("book", "livre", "m", "Buch", "n"),
    _n("letter", "lettre", "f", "Brief", "m"),
    _n("hat", "chapeau", "m", "Hut", "m"),
    _n("cup", "tasse", "f", "Tasse", "f"),
    _n("chair", "chaise", "f", "Stuhl", "m"),
    _n("table", "table", "f", "Tisch", "m"),
    _n("box", "boîte", "f", "Kiste", "f"),
    _n("bag", "sac", "m", "Tasche", "f"),
    _n("key", "clé", "f", "Schlüssel", "m"),
    _n("flower", "fleur", "f", "Blume", "f"),
    _n("apple", "pomme", "f", "Apfel", "m"),
    _n("picture", "tableau", "m", "Bild", "n"),
    _n("car", "voiture", "f", "Auto", "n"),
    _n("boat", "bateau", "m", "Boot", "n"),
    _n("bicycle", "vélo", "m", "Fahrrad", "n"),
)
"""Things that see and are seen. No French noun starts with a vowel or a mute
h (no "l'"), and no German noun is a weak noun (no "den Jungen")."""

PLACES: Final = (
    _n("garden", "jardin", "m", "Garten", "m"),
    _n("house", "maison", "f", "Haus", "n"),
    _n("kitchen", "cuisine", "f", "Küche", "f"),
    _n("park", "parc", "m", "Park", "m"),
    _n("forest", "forêt", "f", "Wald", "m"),
    _n("street", "rue", "f", "Straße", "f"),
    _n("bridge", "pont", "m", "Brücke", "f"),
    _n("barn", "grange", "f", "Scheune", "f"),
    _n("tent", "tente", "f", "Zelt", "n"),
    _n("wall", "mur", "m", "Mauer", "f"),
)

ADJECTIVES: Final = (
    Adjective("small", "petit", "petite", True, "klein"),
    Adjective("big", "grand", "grande", True, "groß"),
    Adjective("old", "vieux", "vieille", True, "alt"),
    Adjective("young", "jeune", "jeune", True, "jung"),
    Adjective("beautiful", "beau", "belle", True, "schön"),
    Adjective("red", "rouge", "rouge", False, "rot"),
    Adjective("green", "vert", "verte", False, "grün"),
    Adjective("blue", "bleu", "bleue", False, "blau"),
    Adjective("black", "noir", "noire", False, "schwarz"),
    Adjective("white", "blanc", "blanche", False, "weiß"),
    Adjective("yellow", "jaune", "jaune", False, "gelb"),
    Adjective("grey", "gris", "grise", False, "grau"),
    Adjective("tired", "fatigué", "fatiguée", False, "müde"),
    Adjective("happy", "content", "contente", False, "froh"),
)

TRANSITIVE_VERBS: Final = (
    Verb(
        ("see", "sees"),
        ("vois", "voit", "voyons", "voient"),
        ("sehe", "sieht", "sehen", "sehen"),
    ),
    Verb(
        ("find", "finds"),
        ("trouve", "trouve", "trouvons", "trouvent"),
        ("finde", "findet", "finden", "finden"),
    ),
    Verb(
        ("watch", "watches"),
        ("regarde", "regarde", "regardons", "regardent"),
        ("beobachte", "beobachtet", "beobachten", "beobachten"),
    ),
    Verb(
        ("carry", "carries"),
        ("porte", "porte", "portons", "portent"),
        ("trage", "trägt", "tragen", "tragen"),
    ),
    Verb(
        ("push", "pushes"),
        ("pousse", "pousse", "poussons", "poussent"),
        ("schiebe", "schiebt", "schieben", "schieben"),
    ),
    Verb(
        ("draw", "draws"),
        ("dessine", "dessine", "dessinons", "dessinent"),
        ("zeichne", "zeichnet", "zeichnen", "zeichnen"),
    ),
    Verb(
        ("take", "takes"),
        ("prends", "prend", "prenons", "prennent"),
        ("nehme", "nimmt", "nehmen", "nehmen"),
    ),
    Verb(
        ("hold", "holds"),
        ("tiens", "tient", "tenons", "tiennent"),
        ("halte", "hält", "halten", "halten"),
    ),
    Verb(
        ("wash", "washes"),
        ("lave", "lave", "lavons", "lavent"),
        ("wasche", "wäscht", "waschen", "waschen"),
    ),
    Verb(
        ("paint", "paints"),
        ("peins", "peint", "peignons", "peignent"),
        ("male", "malt", "malen", "malen"),
    ),
)

INTRANSITIVE_VERBS: Final = (
    Verb(
        ("sleep", "sleeps"),
        ("dors", "dort", "dormons", "dorment"),
        ("schlafe", "schläft", "schlafen", "schlafen"),
    ),
    Verb(
        ("play", "plays"),
        ("joue", "joue", "jouons", "jouent"),
        ("spiele", "spielt", "spielen", "spielen"),
    ),
    Verb(
        ("sing", "sings"),
        ("chante", "chante", "chantons", "chantent"),
        ("singe", "singt", "singen", "singen"),
    ),
    Verb(
        ("run", "runs"),
        ("cours", "court", "courons", "courent"),
        ("laufe", "läuft", "laufen", "laufen"),
    ),
    Verb(
        ("work", "works"),
        ("travaille", "travaille", "travaillons", "travaillent"),
        ("arbeite", "arbeitet", "arbeiten", "arbeiten"),
    ),
    Verb(
        ("read", "reads"),
        ("lis", "lit", "lisons", "lisent"),
        ("lese", "liest", "lesen", "lesen"),
    ),
    Verb(
        ("dance", "dances"),
        ("danse", "danse", "dansons", "dansent"),
        ("tanze", "tanzt", "tanzen", "tanzen"),
    ),
    Verb(
        ("wait", "waits"),
        ("patiente", "patiente", "patientons", "patientent"),
        ("warte", "wartet", "warten", "warten"),
    ),
)

PREPOSITIONS: Final = (
    # (English, French, German); German takes the dative here.
    ("in", "dans", "in"),
    ("near", "près de", "neben"),
    ("behind", "derrière", "hinter"),
    ("under", "sous", "unter"),
)


@dataclass(frozen=True)
class Pronoun:
    en: str
    fr: str
    de: str
    person: int
    """Index into :attr:`Verb.fr` and :attr:`Verb.de`."""
    third_singular: bool
    """Whether English takes "sees" rather than "see"."""


PRONOUNS: Final = (
    Pronoun("I", "je", "ich", 0, False),
    Pronoun("he", "il", "er", 1, True),
    Pronoun("she", "elle", "sie", 1, True),
    Pronoun("we", "nous", "wir", 2, False),
    Pronoun("they", "ils", "sie", 3, False),
)

COPULA: Final = {"en": "is", "fr": "est", "de": "ist"}

Case = Literal["nom", "acc", "dat"]

_DE_ARTICLES: Final[dict[tuple[Case, Gender], str]] = {
    ("nom", "m"): "der",
    ("nom", "f"): "die",
    ("nom", "n"): "das",
    ("acc", "m"): "den",
    ("acc", "f"): "die",
    ("acc", "n"): "das",
    ("dat", "m"): "dem",
    ("dat", "f"): "der",
    ("dat", "n"): "dem",
}


def de_weak_ending(case: Case, gender: Gender) -> str:
    """The adjective ending after a definite article (weak declension, singular)."""
    if case == "nom" or (case == "acc" and gender != "m"):
        return "e"
    return "en"


# --- noun phrases -------------------------------------------------------------


@dataclass(frozen=True)
class NounPhrase:
    noun: Noun
    adjective: Adjective | None = None

    def en(self) -> str:
        adj = f"{self.adjective.en} " if self.adjective else ""
        return f"the {adj}{self.noun.en}"

    def fr(self) -> str:
        """ "le petit chien", "la balle rouge"."""
        article = "le" if self.noun.fr_gender == "m" else "la"
        if self.adjective is None:
            return f"{article} {self.noun.fr}"
        adj = self.adjective.fr_m if self.noun.fr_gender == "m" else self.adjective.fr_f
        if self.adjective.fr_before_noun:
            return f"{article} {adj} {self.noun.fr}"
        return f"{article} {self.noun.fr} {adj}"

    def de(self, case: Case) -> str:
        """ "der kleine Hund", "den roten Ball", "dem alten Baum"."""
        gender = self.noun.de_gender
        article = _DE_ARTICLES[(case, gender)]
        if self.adjective is None:
            return f"{article} {self.noun.de}"
        stem = self.adjective.de
        ending = de_weak_ending(case, gender)
        adj = stem[:-1] + ending if stem.endswith("e") else stem + ending
        return f"{article} {adj} {self.noun.de}"


def _fr_place(preposition: str, place: NounPhrase) -> str:
    """French place phrase; "près de" + "le" contracts to "près du"."""
    phrase = place.fr()
    if preposition == "près de" and phrase.startswith("le "):
        return f"près du {phrase[3:]}"
    return f"{preposition} {phrase}"


def _de_place(preposition: str, place: NounPhrase) -> str:
    """German place phrase (dative); "in dem" contracts to "im"."""
    phrase = place.de("dat")
    if preposition == "in" and phrase.startswith("dem "):
        return f"im {phrase[4:]}"
    return f"{preposition} {phrase}"


# --- sentences ----------------------------------------------------------------


@dataclass(frozen=True)
class ParallelSentence:
    """One sentence of the toy world in English, French and German."""

    en: str
    fr: str
    de: str
    template: str
    """Which template built it: ``transitive``, ``intransitive_place`` or
    ``predicate``."""

    def text(self, lang: str) -> str:
        """The sentence in ``lang`` (``en``, ``fr`` or ``de``)."""
        if lang not in LANGUAGES:
            raise ValueError(
                f"The toy world speaks {', '.join(LANGUAGES)}; there is no {lang!r}."
            )
        return str(getattr(self, lang))


LANGUAGES: Final = ("en", "fr", "de")

TEMPLATES: Final = ("transitive", "intransitive_place", "predicate")


def _sentence(en: str, fr: str, de: str, template: str) -> ParallelSentence:
    def finish(text: str) -> str:
        return text[0].upper() + text[1:] + "."

    return ParallelSentence(finish(en), finish(fr), finish(de), template)


@dataclass(frozen=True)
class Subject:
    """A noun phrase (third person singular) or a pronoun as a verb's subject."""

    head: NounPhrase | Pronoun

    @property
    def person(self) -> int:
        return self.head.person if isinstance(self.head, Pronoun) else 1

    @property
    def third_singular(self) -> bool:
        return not isinstance(self.head, Pronoun) or self.head.third_singular

    def en(self) -> str:
        return self.head.en if isinstance(self.head, Pronoun) else self.head.en()

    def fr(self) -> str:
        return self.head.fr if isinstance(self.head, Pronoun) else self.head.fr()

    def de(self) -> str:
        return self.head.de if isinstance(self.head, Pronoun) else self.head.de("nom")


def transitive(subject: Subject, verb: Verb, obj: NounPhrase) -> ParallelSentence:
    """ "The small dog sees the red ball." """
    en_verb = verb.en[1] if subject.third_singular else verb.en[0]
    return _sentence(
        f"{subject.en()} {en_verb} {obj.en()}",
        f"{subject.fr()} {verb.fr[subject.person]} {obj.fr()}",
        f"{subject.de()} {verb.de[subject.person]} {obj.de('acc')}",
        "transitive",
    )


def intransitive_place(
    subject: Subject, verb: Verb, preposition: tuple[str, str, str], place: NounPhrase
) -> ParallelSentence:
    """ "The cat sleeps under the old tree." """
    en_prep, fr_prep, de_prep = preposition
    en_verb = verb.en[1] if subject.third_singular else verb.en[0]
    return _sentence(
        f"{subject.en()} {en_verb} {en_prep} {place.en()}",
        f"{subject.fr()} {verb.fr[subject.person]} {_fr_place(fr_prep, place)}",
        f"{subject.de()} {verb.de[subject.person]} {_de_place(de_prep, place)}",
        "intransitive_place",
    )


def predicate(subject: NounPhrase, adjective: Adjective) -> ParallelSentence:
    """ "The red ball is small." (French agrees; German predicates do not inflect.)"""
    fr_adj = adjective.fr_m if subject.noun.fr_gender == "m" else adjective.fr_f
    return _sentence(
        f"{subject.en()} {COPULA['en']} {adjective.en}",
        f"{subject.fr()} {COPULA['fr']} {fr_adj}",
        f"{subject.de('nom')} {COPULA['de']} {adjective.de}",
        "predicate",
    )


class ToyWorld:
    """Draws sentences from the toy grammar, deterministically from a seed."""

    ADJECTIVE_PROBABILITY: Final = 0.5
    PRONOUN_PROBABILITY: Final = 0.3

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def _phrase(self, nouns: Sequence[Noun]) -> NounPhrase:
        rng = self._rng
        noun = rng.choice(nouns)
        adjective = (
            rng.choice(ADJECTIVES)
            if rng.random() < self.ADJECTIVE_PROBABILITY
            else None
        )
        return NounPhrase(noun, adjective)

    def _subject(self) -> Subject:
        if self._rng.random() < self.PRONOUN_PROBABILITY:
            return Subject(self._rng.choice(PRONOUNS))
        return Subject(self._phrase(NOUNS))

    def sample(self) -> ParallelSentence:
        """One sentence from a uniformly chosen template."""
        rng = self._rng
        template = rng.choice(TEMPLATES)
        if template == "transitive":
            return transitive(
                self._subject(), rng.choice(TRANSITIVE_VERBS), self._phrase(NOUNS)
            )
        if template == "intransitive_place":
            return intransitive_place(
                self._subject(),
                rng.choice(INTRANSITIVE_VERBS),
                rng.choice(PREPOSITIONS),
                self._phrase(PLACES),
            )
        subject = self._phrase(NOUNS)
        adjective = rng.choice(
            [a for a in ADJECTIVES if a is not subject.adjective]
        )  # never "the red ball is red"
        return predicate(subject, adjective)

    @classmethod
    def generate(
        cls, seed: int, num_train: int, num_dev: int, num_test: int
    ) -> ToyWorldSplits:
        """Distinct sentences split by sentence into train, dev and test.

        The same arguments always give the same splits; no English sentence
        appears in two splits.
        """
        counts = {"num_train": num_train, "num_dev": num_dev, "num_test": num_test}
        for name, count in counts.items():
            if count < 0:
                raise ValueError(f"`{name}` must be non-negative, but is {count}.")

        total = num_train + num_dev + num_test
        if total > MAX_SENTENCES:
            raise ValueError(
                f"The toy world draws at most {MAX_SENTENCES} distinct sentences; {total} were asked for."
            )

        world = cls(seed)
        seen: set[str] = set()
        sentences: list[ParallelSentence] = []
        while len(sentences) < total:
            sentence = world.sample()
            if sentence.en not in seen:
                seen.add(sentence.en)
                sentences.append(sentence)

        return ToyWorldSplits(
            train=tuple(sentences[:num_train]),
            dev=tuple(sentences[num_train : num_train + num_dev]),
            test=tuple(sentences[num_train + num_dev :]),
        )


MAX_SENTENCES: Final = 50_000
"""Far below the grammar's size (millions of sentences), so drawing distinct
sentences never stalls."""


@dataclass(frozen=True)
class ToyWorldSplits:
    """Train, dev and test sentences of one toy world."""

    train: tuple[ParallelSentence, ...]
    dev: tuple[ParallelSentence, ...]
    test: tuple[ParallelSentence, ...]

    def split(self, name: str) -> tuple[ParallelSentence, ...]:
        if name not in ("train", "dev", "test"):
            raise ValueError(
                f"There is no split {name!r}; expected train, dev or test."
            )
        return tuple(getattr(self, name))

    def all_sentences(self) -> tuple[ParallelSentence, ...]:
        return self.train + self.dev + self.test


def vocabulary(lang: str) -> frozenset[str]:
    """Every word the grammar can produce in ``lang`` (lower-cased, no period)."""
    if lang not in LANGUAGES:
        raise ValueError(
            f"The toy world speaks {', '.join(LANGUAGES)}; there is no {lang!r}."
        )
    texts: list[str] = [getattr(noun, lang) for noun in NOUNS + PLACES]
    texts += [" ".join(getattr(v, lang)) for v in TRANSITIVE_VERBS + INTRANSITIVE_VERBS]
    texts += [prep[LANGUAGES.index(lang)] for prep in PREPOSITIONS]
    texts += [getattr(pronoun, lang) for pronoun in PRONOUNS]
    texts += [_adjective_forms(adj, lang) for adj in ADJECTIVES]
    texts.append(_FUNCTION_WORDS[lang] + f" {COPULA[lang]}")
    return frozenset(word for text in texts for word in text.lower().split())


def _adjective_forms(adjective: Adjective, lang: str) -> str:
    if lang == "en":
        return adjective.en
    if lang == "fr":
        return f"{adjective.fr_m} {adjective.fr_f}"
    stem = adjective.de
    inflected = [stem[:-1] + e if stem.endswith("e") else stem + e for e in ("e", "en")]
    return " ".join([stem, *inflected])


_FUNCTION_WORDS: Final = {
    "en": "the",
    "fr": "le la du",
    "de": " ".join(set(_DE_ARTICLES.values())) + " im",
}
"""Articles and contractions the templates add around the words above."""
