"""A deterministic, seeded generator of a small Dolma-format fixture corpus.

    generate(out_dir, seed=0, scale=1.0) -> summary dict
    python -m mixer.devtools.sample_data --out sample_data [--seed 0] [--scale 1.0]

Layout written under out_dir (scale 1.0: ~14k documents, ~3.7M tokens, ~4 MB of .jsonl.zst):

    web/web-NNNN.jsonl.zst          web pages of many kinds (good prose, spam, boilerplate, short,
                                    repeated lines, bullets, symbols, non-English, contaminated,
                                    shared boilerplate paragraphs, exact and near duplicates)
    math/ code/ academic/ qa_forum/ instruction/ encyclopedic/   domain sources
    eval/arc_like.jsonl, eval/gsm_like.jsonl       evaluation sets {"id", "question", "answer"}
    malformed/                      bad shards for ingest tests (invalid JSON / UTF-8, missing
                                    fields, truncated lines, a cut .gz and a cut .zst stream)
    ground_truth/labels.jsonl       every document: id, source, domain, lang, kind,
                                    expected_web_quality
    ground_truth/duplicates.jsonl   web documents in duplicate clusters: id, cluster,
                                    kind (original/exact/near), jaccard to the original
    ground_truth/contamination.jsonl  web documents containing an eval question: id, eval_id, kind
    ground_truth/shared_paragraphs.json  the boilerplate paragraphs repeated across web pages
    ground_truth/malformed.json     per shard file: lines_total, good_lines, bad_lines by reason
                                    family, bad_lines_detail by the reasons `mixer ingest` reports
    summary.json                    what generate() returns

All text comes from this module's own word lists and templates, except Python code documents,
which are cut from the running interpreter's standard library sources (sorted file list, so a
given Python installation always gives the same bytes). Same seed + scale => byte-identical
files: fixed zstd level, no clock, dates derived from the seed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import math
import random
import re
import sysconfig
import zlib
from pathlib import Path

import orjson
import zstandard

ZSTD_LEVEL = 10
DOMAIN_SOURCES = ("math", "code", "academic", "qa_forum", "instruction", "encyclopedic")
SOURCES = ("web", *DOMAIN_SOURCES)

# Documents per kind at scale 1.0 (web duplicates come on top: ~clusters * 2 copies).
WEB_KINDS = {
    "good_prose": 3600,
    "shared_boilerplate": 550,
    "contaminated": 360,
    "spam": 500,
    "boilerplate": 600,
    "short": 500,
    "repeated_lines": 450,
    "bullets": 450,
    "symbols": 250,
    "non_english": 900,
}
DUP_CLUSTERS = 450
DOMAIN_DOCS = {
    "math": 900,
    "code": 700,
    "academic": 800,
    "qa_forum": 800,
    "instruction": 1000,
    "encyclopedic": 800,
}
EVAL_SIZES = {"arc_like": 200, "gsm_like": 200}
WEB_SHARDS = 8
MATH_CONTEXTS = [
    "{NAME} found this one in a {A} workbook from {PLACE}.",
    "While planning a {A} {T}, {NAME} ran into the following question.",
    "This exercise comes from {NAME} {SURNAME}'s lecture notes, week {NUM}.",
    "{NAME} asked the study group in {PLACE} about it.",
    "Here is a warm-up that {NAME} likes to give before the {A} quiz.",
    "Consider the following, taken from the {YEAR} contest in {PLACE}.",
]
MATH_REMARKS = [
    "It is easy to check the result by substituting it back, as {NAME} did.",
    "A common mistake, which {NAME} made twice, is to forget a sign.",
    "{NAME} {SURNAME} points out that the same method works for any {A} case.",
    "This is the step most students in {PLACE} find {A}.",
    "Compare with exercise {NUM}, where the numbers are {A}.",
]
DECON_NGRAM = 13  # eval questions share no n-gram of this length (the usual decon window)

# ------------------------------------------------------------------------------ word lists
# Our own lists: enough distinct words (plus generated names) that unrelated documents share
# few 5-word shingles.

GENERAL_NOUNS = """
table window garden kitchen river mountain village market station bridge street corner
bottle basket blanket bucket candle carpet ceiling chair clock closet cushion desk drawer
engine fence field forest harbor highway island journey ladder lake lamp lantern meadow
mirror morning evening neighbor notebook ocean office orchard package path pencil picture
pillow pocket pond porch puzzle recipe ribbon road roof saddle season shelf shore shovel
signal sketch sky sleeve stair stone story stove summer tent thread ticket tower trail
train tunnel valley wagon wall weekend winter workshop yard afternoon airport album
apartment backpack balcony banner barn beach bench bicycle blossom boat bookstore border
breakfast brush cabin cafe calendar camera canal canyon cart castle cellar cottage counter
cousin crowd cupboard curtain dinner dock doorway dream festival ferry flag flower fountain
gallery gate glacier guest hallway hammer hill holiday hotel idea jacket lesson letter
library lunch map meal melody moment museum napkin note painting palace parade park
passenger pavement pebble photo pier planet playground plaza puddle quilt rain sandwich
scarf schedule shadow sidewalk skyline slope sofa song spoon square stadium statue storm
stream suitcase sunrise sunset teacher teapot theater thunder towel trolley umbrella
vacation vase vendor view violin voyage waiter waterfall wheel whistle wind workbench
"""

TOPIC_NOUNS = {
    "travel": """itinerary passport hostel luggage layover souvenir guidebook ferry cruise
        backpacker visa terminal boarding sightseeing landmark excursion resort campsite
        roadtrip hike lookout harbor tram postcard currency route detour checkpoint""",
    "cooking": """skillet saucepan casserole dough batter marinade broth risotto dumpling
        pastry oven spatula colander whisk garlic onion pepper cinnamon ginger lentil
        noodle tortilla muffin pancake omelet salad vinegar butter flour yeast""",
    "garden": """tomato seedling compost mulch trellis hedge shrub tulip daisy lavender
        fertilizer greenhouse sprinkler weed pumpkin squash zucchini radish carrot
        cucumber beetroot sunflower rosebush hose rake wheelbarrow planter soil root""",
    "fitness": """workout treadmill dumbbell stretch squat lunge marathon sprint cardio
        routine coach trainer muscle posture warmup cooldown interval kettlebell yoga
        pilates rowing cycling swimmer jogger gym locker sneaker hydration protein""",
    "home": """drywall plaster faucet plumbing wiring insulation tile grout hinge
        doorknob cabinet countertop paintbrush primer sealant caulk toolbox screwdriver
        wrench drill sander furnace radiator thermostat gutter chimney attic basement""",
    "gadgets": """laptop tablet smartphone headphone charger battery keyboard monitor
        router printer speaker microphone webcam firmware update processor screen
        bluetooth adapter cable dongle stylus smartwatch console controller drive""",
    "pets": """puppy kitten leash collar kennel aquarium hamster parrot rabbit turtle
        veterinarian treat litter grooming whisker paw tail feeder cage terrier
        retriever goldfish hutch harness chew""",
    "music": """guitar piano drummer chord rhythm harmony concert orchestra band lyric
        chorus verse microphone amplifier tuner metronome playlist vinyl record
        ukulele saxophone trumpet cello rehearsal encore stage""",
    "money": """budget savings mortgage invoice receipt paycheck pension dividend loan
        interest expense account deposit wallet coupon discount bargain subscription
        insurance refund allowance ledger spreadsheet""",
    "family": """toddler grandparent nursery homework lunchbox birthday bedtime
        babysitter stroller crayon sandbox storybook sibling playdate picnic costume
        tradition reunion anniversary photograph""",
}

ADJECTIVES = """
quiet bright warm cold gentle rough smooth heavy light narrow wide deep shallow tall short
quick slow careful busy calm clever curious eager early fresh friendly golden green happy
honest humble large little lively lonely loud lucky modern muddy noisy odd orange pale
patient plain polite proud purple rare ready rich rusty salty sharp shiny silent silver
simple small soft sour spicy steady sticky strange strong sunny sweet tender thick thin
tidy tiny tired tough useful vivid wild wise wooden young ancient brave broken cheerful
cozy crisp dusty elegant famous fancy fragile generous graceful hollow huge icy jolly
juicy kind loyal magnetic mellow mighty misty neat nervous peaceful playful precious
rapid reliable rustic sandy scarce secret shy sleepy snowy sparkling spare stormy sturdy
subtle tame tangy tricky velvet vintage warmhearted windy woolly cheap familiar hidden
local regional seasonal weekly practical affordable comfortable delicate colorful
"""

# Regular verbs only, so the inflection rules below hold.
VERBS = """
visit clean paint cook bake watch fix check open walk start finish enjoy explore collect
compare follow improve measure mix order pack prepare repair share test travel try use wash
fill arrange borrow bother brush carry change climb count cover decorate deliver discover
dry earn empty fold gather guess hang heat hunt iron join jump kick kiss laugh learn lift
listen load lock mark melt mend miss notice offer paste pick plant play polish pour pray
pull push reach record relax remember rescue return roast rush sail scrub search serve
sketch smell sort spray squeeze stack stamp stay steer stretch study suggest support
surprise taste thank tidy touch tow trace trust turn unpack wander want warn water
weigh whistle wish wonder work wrap celebrate replace restore organize photograph
describe explain imagine recommend schedule protect rinse sprinkle chop stir season
"""

ADVERBS = """
quickly slowly carefully quietly gently happily easily rarely often usually always sometimes
finally suddenly barely nearly simply clearly honestly openly patiently proudly softly
warmly boldly calmly eagerly evenly fairly firmly freely neatly politely promptly rapidly
safely smoothly steadily swiftly tightly wisely loosely briefly kindly
"""

TIMES = "week month year season weekend morning evening summer winter spring autumn holiday"
OPENERS = """However Meanwhile Later Afterwards Luckily Surprisingly Honestly Eventually
Still Otherwise Sometimes Usually Yesterday Today Recently Naturally Fortunately Instead"""
PREPS = (
    "near behind beside under above across along around inside outside past beyond between toward"
)

SYLLABLES = """ka ri mo len tha vor bel sun dra mi ko lu ste fan gor hel ia no par quen ros
til ve wyn ad bra cel dor el fi gan hal is jor kel lor mar nes or pel ral sar tor ul var
wen zan be ca de ga ho ju la ne pi ru sa te vi"""
NAME_ENDINGS = ["a", "o", "in", "ar", "en", "is", "el", "an", "ia", "us", "ette", "or"]
PLACE_ENDINGS = ["ton", "field", "burg", "dale", "ford", "haven", "mere", "stead", "wick", "port"]


def _words(block: str) -> list[str]:
    return block.split()


def _plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def _past(verb: str) -> str:
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2:-1] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


def _third(verb: str) -> str:
    """Third person singular: the same spelling rules as a noun's plural."""
    return _plural(verb)


def _gerund(verb: str) -> str:
    if verb.endswith("e") and not verb.endswith("ee"):
        return verb[:-1] + "ing"
    return verb + "ing"


_NOUNS = _words(GENERAL_NOUNS)
_TOPICS = {k: _words(v) for k, v in TOPIC_NOUNS.items()}
_ADJ = _words(ADJECTIVES)
_VERBS = _words(VERBS)
_VERB_FORMS = {v: (_past(v), _third(v), _gerund(v)) for v in _VERBS}
_ADV = _words(ADVERBS)
_TIMES = _words(TIMES)
_OPENERS = _words(OPENERS)
_PREPS = _words(PREPS)
_SYL = _words(SYLLABLES)

# Web prose sentence templates. Slots: N noun, NS plural noun, T topic noun, TS topic plural,
# A adjective, V/VD/VS/VG verb forms, ADV adverb, P preposition, NAME person, PLACE town,
# NUM small number, YEAR, TIME, OPEN sentence opener. Fixed runs stay short so that
# documents built from the same templates share few 5-word shingles.
WEB_TEMPLATES = [
    "We {VD} the {A} {T} near {PLACE} last {TIME}.",
    "I think the {T} {VS} {ADV} when you {V} it with a {A} {N}.",
    "{NAME} {VD} that the {TS} were {A} and {A}.",
    "If you want to {V} a {A} {T}, start with the {TS} and {V} them {ADV}.",
    "The {N} in {PLACE} {VS} more {TS} than any {A} {N} I know.",
    "Our {A} {T} has been {A} since {YEAR}, and we still {V} it every {TIME}.",
    "After {NUM} {TIME}s, the {TS} began to {V} {ADV}.",
    "There is a {A} {N} {P} the {T}, and it {VS} like a {A} {N}.",
    "Most {TS} {V} their {NS} before they {V} the {A} {T}.",
    "You can {V} the {T} with {NUM} {TS} and a {A} {N}.",
    "{OPEN}, the {A} {T} {VD} {P} the {N}.",
    "It was {A} to see how {NAME} {VD} the {TS} at {PLACE}.",
    "Nobody expected the {T} to {V} so {ADV}, but it did.",
    "What makes a {T} {A}? The answer {VS} on the {TS} you {V}.",
    "My {A} {N} {VD} {NUM} {TS} for the {A} {T}.",
    "{OPEN}, {NAME} and I {VD} a {A} {T} {P} the {N}.",
    "Be sure to {V} the {TS} {ADV}, because a {A} {T} {VS} {ADV}.",
    "{VG} a {T} is {A} work, yet it {VS} every {TIME}.",
    "The {A} {TS} from {PLACE} are {A}, {A} and {A}.",
    "Why do so many {NS} {V} a {T} {P} the {N}?",
    "{NAME} once told me that a {A} {T} should never {V} a {N}.",
    "In {YEAR}, the {NS} of {PLACE} {VD} a {A} {T} together.",
    "When the {N} {VD}, we had to {V} the {TS} {ADV}.",
    "I {ADV} {V} my {TS} with {A} {NS} from the {N}.",
    "This {TIME} we will {V} {NUM} {A} {TS} and {V} the {T}.",
    "A {A} {T} and a {A} {N} can {V} any {N}!",
    "Do not {V} the {T} until the {NS} are {A}.",
    "{OPEN}, {VG} the {TS} {VD} us about {NUM} hours.",
    "Every {N} {P} {PLACE} {VS} a {A} {T} of its own.",
    "The trick is to {V} the {T} {ADV} and {V} it {P} a {A} {N}.",
    "{NAME} {VS} {TS} at the {A} {N} on {PLACE} Road.",
    "Have you ever tried to {V} a {A} {T} in the {TIME}?",
]

ENCYC_TEMPLATES = [
    "{PLACE} is a {A} {KIND} in the {DIR} part of {REGION}.",
    "It was first recorded in {YEAR} as a {A} settlement {P} the {GEO}.",
    "The population was {BIG} at the census of {YEAR}.",
    "{NAME} {SURNAME} founded the {INST} of {PLACE} in {YEAR}.",
    "The economy of {PLACE} is based on {INDUSTRY} and {INDUSTRY}.",
    "During the {CENTURY} century, the {KIND} became known for its {A} {GEO}.",
    "The {GEO} of {PLACE} covers an area of {NUM2} square kilometres.",
    "{NAME} {SURNAME} ({YEAR}\u2013{YEAR2}) was a {NATION} {PROFESSION} born in {PLACE}.",
    "The {INST} was rebuilt in {YEAR} after a {DISASTER} destroyed the original {BUILDING}.",
    "{PLACE} lies on the {A} bank of the {RIVER} River, {NUM2} kilometres from {PLACE2}.",
    "The {BUILDING} of {PLACE} was designed by the {PROFESSION} {NAME} {SURNAME}.",
    "Its climate is {CLIMATE}, with an average temperature of {NUM2} degrees.",
    "The {KIND} is governed by a council of {NUM} members elected every {NUM} years.",
    "In {YEAR}, {PLACE} was connected to {PLACE2} by a {TRANSPORT}.",
    "The {INST} holds a collection of {BIG} {ITEMS}.",
    "Several {PROFESSION}s, including {NAME} {SURNAME}, lived in {PLACE} during the {CENTURY} century.",
    "The species {GENUS} {EPITHET} is found in the {GEO}s of {REGION}.",
    "It is named after {NAME} {SURNAME}, a {NATION} {PROFESSION}.",
]

# --------------------------------------------------------------- other vocabularies
ENCYC = {
    "KIND": "town village city municipality district parish county borough commune province".split(),
    "DIR": "northern southern eastern western central northeastern southwestern coastal".split(),
    "GEO": "river valley plateau coast bay delta highlands marshes lowlands peninsula basin".split(),
    "INST": "University Museum Library Academy Cathedral Observatory Conservatory Hospital".split(),
    "INDUSTRY": """agriculture fishing tourism forestry mining textiles shipbuilding brewing
        pottery trade printing logistics""".split(),
    "CENTURY": "twelfth thirteenth fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split(),
    "NATION": "Norwegian Italian Portuguese Austrian Chilean Canadian Scottish Flemish Polish Greek".split(),
    "PROFESSION": """architect painter composer botanist astronomer historian engineer poet
        cartographer physician mathematician sculptor""".split(),
    "DISASTER": "fire flood earthquake storm siege".split(),
    "BUILDING": "town hall cathedral bridge lighthouse market hall chapel fortress".split(),
    "CLIMATE": "temperate oceanic continental subtropical alpine semi-arid".split(),
    "TRANSPORT": "railway line canal tramway highway ferry route".split(),
    "ITEMS": "manuscripts paintings fossils coins maps sculptures instruments letters".split(),
    "GENUS": "Quercus Salix Picea Betula Carex Rana Lutra Falco Turdus Sorex".split(),
}
ENCYC_SECTIONS = [
    "History",
    "Geography",
    "Economy",
    "Culture",
    "Demographics",
    "Notable people",
    "Climate",
    "Transport",
]

SCI = {
    "SN": """model network dataset benchmark encoder decoder estimator classifier corpus
        algorithm framework architecture embedding representation regularizer optimizer
        protein enzyme genome cell tissue sensor signal spectrum particle lattice catalyst
        polymer reactor sample cohort trial patient simulation solver kernel graph""".split(),
    "SA": """robust scalable efficient novel sparse latent adaptive stochastic multimodal
        hierarchical convolutional recurrent bayesian generative discriminative
        nonlinear quantitative empirical longitudinal randomized thermal magnetic
        supervised unsupervised contrastive causal spectral""".split(),
    "SV": """propose introduce evaluate analyze demonstrate investigate derive measure
        estimate compare characterize quantify validate extend""".split(),
    "FIELD": """machine learning, computational biology, materials science, climate modeling,
        natural language processing, computer vision, epidemiology, condensed matter physics,
        neuroscience, robotics""",
    "METRIC": "accuracy precision recall error variance throughput yield efficiency latency".split(),
}
SURNAMES_EXTRA = [
    "Okafor",
    "Lindqvist",
    "Moreau",
    "Tanaka",
    "Novak",
    "Haddad",
    "Ferreira",
    "Kowalski",
]

TECH = {
    "TOOL": "Python JavaScript Rust Excel Linux Docker Git PostgreSQL Bash Vim React Go".split(),
    "TASK": """parse a date string, remove duplicates from a list, read a large file line by line,
        sort a dictionary by value, merge two branches, rename many files at once,
        connect to a database, format a number with commas, run a command in the background,
        split a string on whitespace, convert a column to integers, debug a memory leak,
        undo the last commit, limit the number of threads, escape quotes in a query""",
    "ERROR": """KeyError, permission denied, connection refused, segmentation fault, index out of range,
        undefined is not a function, merge conflict, timeout expired, syntax error near token,
        file not found""",
}

for _table, _key in ((SCI, "FIELD"), (TECH, "TASK"), (TECH, "ERROR")):
    _table[_key] = re.split(r",\s*", _table[_key].strip())

INSTR_TASKS = [
    "Write a short paragraph about {T}.",
    "List {NUM} tips for choosing a good {T}.",
    "Explain in simple terms why a {T} {VS} {ADV}.",
    "Rewrite the following sentence so it sounds more formal: {SENT}",
    "Summarize the following text in one sentence: {PARA}",
    "Classify the sentiment of this review as positive or negative: {SENT}",
    "Give {NUM} ideas for a {A} weekend with a {T}.",
    "Translate the sentence into plain English for a child: {SENT}",
    "Suggest a title for a blog post about a {A} {T}.",
    "Compose a polite email asking {NAME} to {V} the {T}.",
]

# Non-English: small word lists with real function words.
FOREIGN = {
    "fr": {
        "det": "le la les un une des ce cette notre votre".split(),
        "n": """maison jardin ville rue voiture famille enfant livre table travail école
            marché soleil pluie montagne rivière village fenêtre cuisine repas ami chemin
            histoire semaine matin soir pays mer forêt musique journal gare""".split(),
        "v": """mange regarde aime cherche trouve porte donne prend ouvre ferme parle
            travaille habite visite prépare raconte achète écoute""".split(),
        "a": "grand petit beau vieux nouveau joli calme rapide simple heureux chaud froid".split(),
        "p": "dans sur avec pour sans sous vers chez près de après avant".split(),
        "c": "et mais donc car puis parce que alors aussi".split(),
        "pro": "il elle nous on ils elles je vous".split(),
    },
    "de": {
        "det": "der die das ein eine dieser unsere meine jeder".split(),
        "n": """Haus Garten Stadt Straße Auto Familie Kind Buch Tisch Arbeit Schule Markt
            Sonne Regen Berg Fluss Dorf Fenster Küche Essen Freund Weg Geschichte Woche
            Morgen Abend Land Meer Wald Musik Zeitung Bahnhof""".split(),
        "v": """isst sieht liebt sucht findet trägt gibt nimmt öffnet schließt spricht
            arbeitet wohnt besucht kocht erzählt kauft hört""".split(),
        "a": "groß klein schön alt neu ruhig schnell einfach glücklich warm kalt hell".split(),
        "p": "in auf mit für ohne unter nach bei vor zwischen durch gegen".split(),
        "c": "und aber oder denn weil dann auch doch".split(),
        "pro": "er sie wir man ich ihr es".split(),
    },
    "es": {
        "det": "el la los las un una este esta nuestro cada".split(),
        "n": """casa jardín ciudad calle coche familia niño libro mesa trabajo escuela
            mercado sol lluvia montaña río pueblo ventana cocina comida amigo camino
            historia semana mañana tarde país mar bosque música periódico estación""".split(),
        "v": """come mira ama busca encuentra lleva da toma abre cierra habla trabaja
            vive visita prepara cuenta compra escucha""".split(),
        "a": "grande pequeño bonito viejo nuevo tranquilo rápido sencillo feliz caliente frío claro".split(),
        "p": "en sobre con para sin bajo hacia desde entre por según tras".split(),
        "c": "y pero porque entonces también aunque pues además".split(),
        "pro": "él ella nosotros ellos yo usted se".split(),
    },
}
CJK_ZH = "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明"
JA_KANA = (
    "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
)
JA_WORDS = "日本 東京 学校 先生 天気 電車 今日 時間 友達 家族 料理 仕事 写真 映画 音楽".split()
AR_WORDS = "في من على إلى أن هذا التي الذي كان مع عن هذه بين كل بعد قبل المدينة البيت الكتاب الطريق اليوم الناس العمل الماء الشمس الليل".split()
HE_WORDS = "של את על עם זה היא הוא לא כל גם אבל הבית העיר הספר היום הדרך המים השמש הלילה העבודה האנשים".split()
RU_WORDS = "и в не на я что он с как а то все она так его но да ты к у же вы за бы по только дом город улица книга работа школа солнце дорога день вечер".split()

BOILER_LINES = [
    "Home | About | Contact | Blog | Shop",
    "Skip to main content",
    "Menu",
    "Search",
    "Login | Register",
    "This website uses cookies to improve your experience.",
    "Accept all cookies",
    "Please enable JavaScript in your browser to view this page.",
    "Read our privacy policy and terms of use.",
    "Copyright {YEAR} All rights reserved.",
    "Share on Facebook",
    "Tweet",
    "Previous post",
    "Next post",
    "Related articles",
    "Subscribe",
    "Leave a comment",
    "Powered by WordPress",
    "Back to top",
    "Sitemap",
]
LOREM = (
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat."
)
SPAM_WORDS = """cheap best buy discount free online deal sale price top offer now click
    order shipping wholesale replica pills casino bonus win cash loan fast guaranteed
    lowest review coupon promo exclusive limited""".split()

TLDS = ["com", "org", "net", "co.uk", "de", "fr", "es", "io", "info", "blog"]


# ---------------------------------------------------------------------------- the generator


_A_AN = re.compile(r"\b([Aa]) (?=[aeio]|u[^s])")


class _Writer:
    """Builds text from templates with one seeded RNG (never the global one)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self._slot_re = re.compile(r"\{([A-Z0-9]+)\}")
        self._py_queue: list[Path] = []

    # ---- atoms
    def pick(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def name(self) -> str:
        r = self.rng
        return (
            "".join(self.pick(_SYL) for _ in range(r.randint(1, 2))) + self.pick(NAME_ENDINGS)
        ).capitalize()

    def surname(self) -> str:
        if self.rng.random() < 0.1:
            return self.pick(SURNAMES_EXTRA)
        r = self.rng
        return (
            "".join(self.pick(_SYL) for _ in range(r.randint(2, 3)))
            + self.pick(["er", "son", "ley", "ov", "ez", "ini", "berg", "ard"])
        ).capitalize()

    def place(self) -> str:
        r = self.rng
        return (
            "".join(self.pick(_SYL) for _ in range(r.randint(1, 2))) + self.pick(PLACE_ENDINGS)
        ).capitalize()

    def slot(self, key: str, topic: list[str]) -> str:
        r = self.rng
        if key == "N":
            return self.pick(_NOUNS)
        if key == "NS":
            return _plural(self.pick(_NOUNS))
        if key == "T":
            return self.pick(topic) if r.random() < 0.7 else self.pick(_NOUNS)
        if key == "TS":
            return _plural(self.pick(topic) if r.random() < 0.7 else self.pick(_NOUNS))
        if key == "A":
            return self.pick(_ADJ)
        if key == "V":
            return self.pick(_VERBS)
        if key == "VD":
            return _VERB_FORMS[self.pick(_VERBS)][0]
        if key == "VS":
            return _VERB_FORMS[self.pick(_VERBS)][1]
        if key == "VG":
            return _VERB_FORMS[self.pick(_VERBS)][2]
        if key == "ADV":
            return self.pick(_ADV)
        if key == "P":
            return self.pick(_PREPS)
        if key == "NAME":
            return self.name()
        if key == "SURNAME":
            return self.surname()
        if key in ("PLACE", "PLACE2"):
            return self.place()
        if key == "NUM":
            return str(r.randint(2, 12))
        if key == "NUM2":
            return str(r.randint(12, 980))
        if key == "BIG":
            return f"{r.randint(1200, 480000):,}"
        if key == "YEAR":
            return str(r.randint(1850, 2023))
        if key == "YEAR2":
            return str(r.randint(1900, 2023))
        if key == "TIME":
            return self.pick(_TIMES)
        if key == "OPEN":
            return self.pick(_OPENERS)
        if key == "REGION":
            return self.place().replace("ton", "ia").replace("field", "land")
        if key == "RIVER":
            return self.name()
        if key == "EPITHET":
            return (
                self.pick(_SYL)
                + self.pick(_SYL)
                + self.pick(["ensis", "ica", "ata", "oides", "ii"])
            )
        if key == "SENT":
            return self.sentence(self.pick(WEB_TEMPLATES), topic)
        if key == "PARA":
            return self.paragraph(topic, 3, 4)
        if key in ENCYC:
            return self.pick(ENCYC[key])
        if key in SCI:
            return self.pick(SCI[key])
        if key in TECH:
            return self.pick(TECH[key])
        raise KeyError(key)

    def fill(self, template: str, topic: list[str]) -> str:
        return self._slot_re.sub(lambda m: self.slot(m.group(1), topic), template)

    def sentence(self, template: str, topic: list[str]) -> str:
        s = _A_AN.sub(r"\1n ", self.fill(template, topic))
        return s[0].upper() + s[1:]

    def paragraph(self, topic: list[str], lo: int = 3, hi: int = 6, templates=WEB_TEMPLATES) -> str:
        return " ".join(
            self.sentence(self.pick(templates), topic) for _ in range(self.rng.randint(lo, hi))
        )

    def topic(self) -> tuple[str, list[str]]:
        key = self.pick(sorted(_TOPICS))
        return key, _TOPICS[key]

    def title(self, topic: list[str]) -> str:
        r = self.rng
        forms = [
            "{NUM} {A} {TS} for the {TIME}",
            "How we {VD} our {T}",
            "A {A} {T} in {PLACE}",
            "Notes on {VG} a {T}",
            "Why I {V} {TS}",
        ]
        t = self.fill(self.pick(forms), topic)
        return t[0].upper() + t[1:] if r.random() < 0.9 else t.upper()

    # ---- web kinds
    def good_prose(self, topic: list[str], n_par: tuple[int, int] = (2, 6)) -> str:
        paras = [self.paragraph(topic) for _ in range(self.rng.randint(*n_par))]
        if self.rng.random() < 0.5:
            paras.insert(0, self.title(topic))
        return "\n\n".join(paras)

    def spam(self, topic: list[str]) -> str:
        r = self.rng
        keywords = [self.pick(SPAM_WORDS) for _ in range(4)] + [self.pick(topic) for _ in range(3)]
        lines = []
        for _ in range(r.randint(3, 12)):
            lines.append(" ".join(self.pick(keywords) for _ in range(r.randint(6, 25))))
        if r.random() < 0.5:
            lines.append(f"www.{self.pick(keywords)}{self.pick(keywords)}.{self.pick(TLDS)}")
        return "\n".join(lines)

    def boilerplate(self, topic: list[str]) -> str:
        r = self.rng
        lines = [self.fill(self.pick(BOILER_LINES), topic) for _ in range(r.randint(6, 16))]
        if r.random() < 0.5:
            lines.insert(r.randrange(len(lines)), LOREM)
        if r.random() < 0.5:
            lines.insert(r.randrange(len(lines)), self.sentence(self.pick(WEB_TEMPLATES), topic))
        if r.random() < 0.3:
            lines.append("function init() { loadWidget('sidebar'); }")
        return "\n".join(lines)

    def short(self, topic: list[str]) -> str:
        r = self.rng
        choice = r.random()
        if choice < 0.4:
            return self.title(topic)
        if choice < 0.8:
            return self.sentence(self.pick(WEB_TEMPLATES), topic)
        return self.title(topic) + "\n" + self.pick(BOILER_LINES[:6])

    def repeated_lines(self, topic: list[str]) -> str:
        r = self.rng
        pool = [self.sentence(self.pick(WEB_TEMPLATES), topic) for _ in range(r.randint(1, 3))]
        lines = [self.pick(pool) for _ in range(r.randint(12, 40))]
        return "\n".join(lines)

    def bullets(self, topic: list[str]) -> str:
        r = self.rng
        # mostly the marks every Gopher implementation counts; a few others for variety
        mark = self.pick(["\u2022", "\u2022", "-", "-", "*", "\u25cf"])
        lines = [
            f"{mark} {self.fill(self.pick(['{A} {T}', '{NUM} {TS}', '{V} the {T}', '{A} {TS} and {NS}']), topic)}"
            for _ in range(r.randint(12, 40))
        ]
        if r.random() < 0.5:
            lines.insert(0, self.title(topic))
        return "\n".join(lines)

    def symbols(self, topic: list[str]) -> str:
        r = self.rng
        lines = []
        for _ in range(r.randint(8, 20)):
            words = [self.pick(topic) for _ in range(r.randint(2, 6))]
            tag = " ".join("#" + w for w in words)
            lines.append(f"{tag} ..." if r.random() < 0.6 else f"{' '.join(words)}\u2026")
        return "\n".join(lines)

    def foreign(self, lang: str) -> str:
        r = self.rng
        if lang in FOREIGN:
            w = FOREIGN[lang]
            paras = []
            for _ in range(r.randint(2, 5)):
                sents = []
                for _ in range(r.randint(3, 6)):
                    form = r.randrange(3)
                    if form == 0:
                        s = f"{self.pick(w['det'])} {self.pick(w['n'])} {self.pick(w['a'])} {self.pick(w['v'])} {self.pick(w['p'])} {self.pick(w['det'])} {self.pick(w['n'])}"
                    elif form == 1:
                        s = f"{self.pick(w['pro'])} {self.pick(w['v'])} {self.pick(w['det'])} {self.pick(w['n'])} {self.pick(w['c'])} {self.pick(w['pro'])} {self.pick(w['v'])} {self.pick(w['det'])} {self.pick(w['n'])} {self.pick(w['a'])}"
                    else:
                        s = f"{self.pick(w['p'])} {self.pick(w['det'])} {self.pick(w['n'])}, {self.pick(w['pro'])} {self.pick(w['v'])} {self.pick(w['det'])} {self.pick(w['a'])} {self.pick(w['n'])} {self.pick(w['c'])} {self.pick(w['det'])} {self.pick(w['n'])}"
                    sents.append(s[0].upper() + s[1:] + self.pick([".", ".", ".", "!", "?"]))
                paras.append(" ".join(sents))
            return "\n\n".join(paras)
        paras = []
        for _ in range(r.randint(2, 4)):
            if lang == "zh":
                sents = [
                    "".join(self.pick(CJK_ZH) for _ in range(r.randint(8, 30))) + "\u3002"
                    for _ in range(r.randint(3, 6))
                ]
                paras.append("".join(sents))
            elif lang == "ja":
                sents = [
                    "".join(
                        self.pick(JA_WORDS)
                        + "".join(self.pick(JA_KANA) for _ in range(r.randint(2, 5)))
                        for _ in range(r.randint(2, 5))
                    )
                    + "\u3002"
                    for _ in range(r.randint(3, 6))
                ]
                paras.append("".join(sents))
            else:
                words = {"ar": AR_WORDS, "he": HE_WORDS, "ru": RU_WORDS}[lang]
                sents = [
                    " ".join(self.pick(words) for _ in range(r.randint(6, 14))) + "."
                    for _ in range(r.randint(3, 6))
                ]
                paras.append(" ".join(sents))
        return "\n\n".join(paras)

    # ---- domains
    def math_doc(self) -> str:
        r = self.rng
        parts = []
        for i in range(r.randint(2, 5)):
            p, s, kind = self._math_problem()
            head = self.pick(
                [
                    f"Problem {i + 1}.",
                    f"Exercise {r.randint(1, 40)}.{i + 1}",
                    "Problem:",
                    "Question.",
                ]
            )
            if r.random() < 0.6:  # a framing sentence with names: problems differ beyond numbers
                p = self.sentence(self.pick(MATH_CONTEXTS), self.topic()[1]) + " " + p
            sol = "Proof." if kind == 7 else self.pick(["Solution.", "Solution:", "Answer:"])
            if r.random() < 0.5:
                s = s + " " + self.sentence(self.pick(MATH_REMARKS), self.topic()[1])
            parts.append(f"{head} {p}\n\n{sol} {s}")
        return "\n\n".join(parts)

    def _math_problem(self) -> tuple[str, str, int]:
        kind = self.rng.randrange(8)
        return (*self._math_kind(kind), kind)

    def _math_kind(self, kind: int) -> tuple[str, str]:
        r = self.rng
        v = self.pick(["x", "y", "n", "t", "z", "a", "b", "m", "u", "w"])
        if kind == 0:
            a, x, b = r.randint(2, 19), r.randint(-20, 30), r.randint(1, 60)
            c = a * x + b
            return (
                f"Solve for ${v}$: ${a}{v} + {b} = {c}$.",
                f"{self.pick(['Subtracting', 'Taking away', 'Removing'])} ${b}$ from both sides "
                f"{self.pick(['gives', 'leaves', 'yields'])} ${a}{v} = {c - b}$. "
                f"{self.pick(['Dividing by', 'After dividing both sides by', 'Then divide by'])} ${a}$, we get $${v} = \\frac{{{c - b}}}{{{a}}} = {x}.$$ Hence $\\boxed{{{x}}}$.",
            )
        if kind == 1:
            a, b, c, d = (r.randint(1, 12) for _ in range(4))
            num, den = a * d + b * c, b * d
            g = math.gcd(num, den)
            return (
                f"Compute $\\frac{{{a}}}{{{b}}} + \\frac{{{c}}}{{{d}}}$ and simplify.",
                f"Using a common denominator, $\\frac{{{a}}}{{{b}}} + \\frac{{{c}}}{{{d}}} = "
                f"\\frac{{{a} \\cdot {d} + {c} \\cdot {b}}}{{{b} \\cdot {d}}} = \\frac{{{num}}}{{{den}}}$"
                + (
                    f", which reduces to $\\frac{{{num // g}}}{{{den // g}}}$."
                    if g > 1
                    else ", already in lowest terms."
                ),
            )
        if kind == 2:
            n = r.randint(5, 200)
            if r.random() < 0.5:
                return (
                    f"Evaluate $\\sum_{{k=1}}^{{{n}}} k$.",
                    f"By the formula $\\sum_{{k=1}}^{{n}} k = \\frac{{n(n+1)}}{{2}}$ with $n = {n}$, "
                    f"the sum is $\\frac{{{n} \\cdot {n + 1}}}{{2}} = {n * (n + 1) // 2}$.",
                )
            return (
                f"Find $\\sum_{{k=1}}^{{{n}}} k^2$.",
                f"We use $\\sum_{{k=1}}^{{n}} k^2 = \\frac{{n(n+1)(2n+1)}}{{6}}$. For $n = {n}$ this equals "
                f"$\\frac{{{n} \\cdot {n + 1} \\cdot {2 * n + 1}}}{{6}} = {n * (n + 1) * (2 * n + 1) // 6}$.",
            )
        if kind == 3:
            a, n, b = r.randint(2, 9), r.randint(2, 7), r.randint(1, 15)
            return (
                f"Differentiate $f({v}) = {a}{v}^{{{n}}} + {b}{v}$ with respect to ${v}$.",
                f"By the power rule, $\\frac{{d}}{{d{v}}} {v}^{{{n}}} = {n}{v}^{{{n - 1}}}$. Therefore "
                f"$f'({v}) = {a * n}{v}^{{{n - 1}}} + {b}$.",
            )
        if kind == 4:
            p, q = r.randint(-9, 9), r.randint(-9, 9)
            s, prod = p + q, p * q
            return (
                f"Find all real roots of ${v}^2 {'-' if s >= 0 else '+'} {abs(s)}{v} {'+' if prod >= 0 else '-'} {abs(prod)} = 0$.",
                f"The discriminant is $\\Delta = {s}^2 - 4 \\cdot {prod} = {s * s - 4 * prod}$. Factoring, "
                f"$({v} - {p})({v} - {q}) = 0$, so ${v} = {p}$ or ${v} = {q}$.",
            )
        if kind == 5:
            rad = r.randint(2, 30)
            return (
                f"A circle has radius ${rad}$. What is its area?",
                f"The area of a circle is $A = \\pi r^2$, so $A = \\pi \\cdot {rad}^2 = {rad * rad}\\pi \\approx {math.pi * rad * rad:.2f}$.",
            )
        if kind == 6:
            a, b = r.randint(2, 9), r.randint(2, 9)
            return (
                f"Evaluate the integral $\\int_0^{{{b}}} {a}{v}\\, d{v}$.",
                f"\\begin{{align*}}\n\\int_0^{{{b}}} {a}{v}\\, d{v} &= \\left[\\frac{{{a}}}{{2}}{v}^2\\right]_0^{{{b}}} \\\\\n"
                f"&= \\frac{{{a} \\cdot {b * b}}}{{2}} = {a * b * b / 2:g}.\n\\end{{align*}}",
            )
        m, k = r.randint(2, 9), r.randint(1, 9)
        return (
            f"Prove that for every integer $n \\geq 1$, ${m}^n - 1$ is divisible by ${m - 1}$.",
            f"We argue by induction on $n$. For $n = 1$, ${m} - 1 = {m - 1}$. Assume ${m - 1} \\mid {m}^n - 1$. Then "
            f"${m}^{{n+1}} - 1 = {m}({m}^n - 1) + {m - 1}$, and both terms are divisible by ${m - 1}$. "
            f"For instance, with $n = {k}$ we get ${m**k - 1} = {m - 1} \\cdot {(m**k - 1) // (m - 1)}$. $\\blacksquare$",
        )

    def academic_doc(self) -> str:
        r = self.rng
        field = self.pick(SCI["FIELD"])
        t = lambda s: self.sentence(s, [])  # noqa: E731
        title = t("{SA} {SN}s for {SA} {SN} estimation").title()
        authors = ", ".join(f"{self.name()} {self.surname()}" for _ in range(r.randint(1, 5)))
        cites = iter(range(1, 60))
        abstract = " ".join(
            [
                t("{SN}s are central to " + field + ", yet {SA} {SN}s remain difficult to {SV}."),
                t("In this paper we {SV} a {SA} {SN} that combines a {SA} {SN} with a {SA} {SN}."),
                t(
                    "We {SV} the approach on {NUM} {SN}s and observe a "
                    + f"{r.randint(3, 40)}.{r.randint(0, 9)}% improvement in {{METRIC}}."
                ),
                t("Our results suggest that {SA} {SN}s can {SV} {SA} structure at scale."),
            ]
        )
        intro = []
        for _ in range(r.randint(4, 8)):
            form = r.randrange(4)
            if form == 0:
                intro.append(
                    t(
                        "{SURNAME} et al. ({YEAR}) {SV}d a {SA} {SN} for {SN} analysis "
                        + f"[{next(cites)}]."
                    )
                )
            elif form == 1:
                intro.append(
                    t(
                        "Prior work on {SA} {SN}s "
                        + f"[{next(cites)}, {next(cites)}]"
                        + " has focused on {SA} settings."
                    )
                )
            elif form == 2:
                intro.append(
                    t("Unlike {SURNAME} and {SURNAME} ({YEAR}), we do not assume a {SA} {SN}.")
                )
            else:
                intro.append(
                    t(
                        "We measure {METRIC} with "
                        + f"$p < 0.0{r.randint(1, 5)}$"
                        + " across {NUM} {SA} {SN}s."
                    )
                )
        sections = [title, authors, "Abstract", abstract, "1 Introduction", " ".join(intro)]
        if r.random() < 0.6:
            sections += [
                "2 Methods",
                " ".join(
                    t(
                        self.pick(
                            [
                                "We {SV} each {SN} using a {SA} {SN} " + f"[{next(cites)}].",
                                "The {SN} is trained for {NUM2} epochs with a {SA} {SN}.",
                            ]
                        )
                    )
                    for _ in range(r.randint(3, 6))
                ),
            ]
        if r.random() < 0.5:
            refs = [
                f"[{i}] {self.surname()}, {self.name()[0]}. et al. {self.sentence('{SA} {SN}s and {SN}s', []).title()}. {r.randint(1995, 2024)}."
                for i in range(1, r.randint(3, 7))
            ]
            sections += ["References", "\n".join(refs)]
        return "\n\n".join(sections)

    def qa_doc(self) -> str:
        r = self.rng
        user = lambda: f"{self.name().lower()}{r.randint(1, 9999)}"  # noqa: E731
        if r.random() < 0.6:
            tool, task = self.pick(TECH["TOOL"]), self.pick(TECH["TASK"])
            q = f"Question: How do I {task} in {tool}?"
            body = (
                f'I am trying to {task} but I keep getting "{self.pick(TECH["ERROR"])}". '
                f"I already tried restarting and reading the docs for {tool} {r.randint(1, 12)}.{r.randint(0, 20)}. "
                f"What am I missing?"
            )
        else:
            _, topic = self.topic()
            q = self.fill("Question: What is the best way to {V} a {A} {T}?", topic)
            body = self.paragraph(topic, 2, 3)
        lines = [
            q,
            f"Asked by {user()} \u00b7 {r.randint(-2, 250)} votes \u00b7 {r.randint(20, 90000)} views",
            "",
            body,
        ]
        for a in range(r.randint(1, 4)):
            accepted = " \u2713 accepted" if a == 0 and r.random() < 0.6 else ""
            lines += ["", f"Answer ({r.randint(0, 400)} votes){accepted} by {user()}:"]
            _, topic = self.topic()
            lines.append(self.paragraph(topic, 2, 4))
            if r.random() < 0.4:
                lines.append(
                    f"Comment by {user()}: Thanks, this worked for me on {self.pick(TECH['TOOL'])}."
                )
            if r.random() < 0.3:
                lines.append(f"Edit: see also the answer by {user()} above.")
        return "\n".join(lines)

    def instruction_doc(self) -> str:
        r = self.rng
        _, topic = self.topic()
        task = self.fill(self.pick(INSTR_TASKS), topic)
        if task.startswith("List") or task.startswith("Give"):
            n = int(re.search(r"\d+", task).group())
            response = "\n".join(
                f"{i + 1}. {self.sentence(self.pick(WEB_TEMPLATES), topic)}" for i in range(n)
            )
        elif task.startswith("Classify"):
            response = self.pick(
                [
                    "Positive.",
                    "Negative.",
                    "The sentiment is positive.",
                    "The sentiment is negative.",
                ]
            )
        elif task.startswith("Suggest"):
            response = self.title(topic)
        else:
            response = self.paragraph(topic, 2, 5)
        fmt = r.randrange(4)
        if fmt == 0:
            return f"### Instruction:\n{task}\n\n### Response:\n{response}"
        if fmt == 1:
            return f"Below is an instruction that describes a task. Write a response that completes the request.\n\n### Instruction:\n{task}\n\n### Response:\n{response}"
        if fmt == 2:
            return f"User: {task}\nAssistant: {response}"
        return f"Human: {task}\n\nAssistant: {response}"

    def encyclopedic_doc(self) -> str:
        r = self.rng
        title, kind = self.place(), self.pick(ENCYC["KIND"])

        def about(template: str) -> str:
            # most sentences are about the article's subject
            if r.random() < 0.8:
                template = template.replace("{PLACE}", title, 1).replace("{KIND}", kind)
            return self.sentence(template, [])

        lead = f"{title} is a {kind} in the {self.pick(ENCYC['DIR'])} part of {self.slot('REGION', [])}."
        body = " ".join(about(self.pick(ENCYC_TEMPLATES)) for _ in range(r.randint(2, 4)))
        paras = [title, f"{lead} {body}"]
        for sec in r.sample(ENCYC_SECTIONS, r.randint(2, 4)):
            paras.append(sec)
            paras.append(
                " ".join(about(self.pick(ENCYC_TEMPLATES)) for _ in range(r.randint(3, 6)))
            )
        return "\n\n".join(paras)

    # code documents: stdlib Python slices and templated other languages
    def code_doc(self, py_files: list[Path]) -> tuple[str, dict]:
        r = self.rng
        if py_files and r.random() < 0.45:
            # each file once per pass, so slices of one file rarely overlap (no hidden near dups)
            if not self._py_queue:
                self._py_queue = list(py_files)
                r.shuffle(self._py_queue)
            path = self._py_queue.pop()
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError):
                lines = []
            if len(lines) > 20:
                start = r.randrange(max(1, len(lines) - 40))
                text = "\n".join(lines[start : start + r.randint(40, 160)])
                rel = path.relative_to(_stdlib_root()).as_posix()
                return text, {"language": "python", "path": f"Lib/{rel}"}
        lang = self.pick(["javascript", "c", "java", "rust", "go", "shell", "python"])
        funcs = [self._code_function(lang) for _ in range(r.randint(2, 6))]
        header = {
            "javascript": "'use strict';\n\nconst fs = require('fs');",
            "c": "#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>",
            "java": f"package com.{self.pick(_NOUNS)}.{self.pick(_NOUNS)};\n\nimport java.util.List;\nimport java.util.ArrayList;",
            "rust": "use std::collections::HashMap;",
            "go": 'package main\n\nimport (\n\t"fmt"\n\t"strings"\n)',
            "shell": "#!/usr/bin/env bash\nset -euo pipefail",
            "python": "import os\nimport sys\nfrom pathlib import Path",
        }[lang]
        body = "\n\n".join(funcs)
        if lang == "java":
            body = (
                f"public class {self.pick(_NOUNS).capitalize()}{self.pick(_NOUNS).capitalize()} {{\n"
                + "\n".join("    " + ln if ln else ln for ln in body.split("\n"))
                + "\n}"
            )
        ext = {
            "javascript": "js",
            "c": "c",
            "java": "java",
            "rust": "rs",
            "go": "go",
            "shell": "sh",
            "python": "py",
        }[lang]
        return f"{header}\n\n{body}\n", {
            "language": lang,
            "path": f"src/{self.pick(_NOUNS)}_{self.pick(_NOUNS)}.{ext}",
        }

    def _code_function(self, lang: str) -> str:
        r = self.rng
        a, b, c = self.pick(_VERBS), self.pick(_NOUNS), self.pick(_ADJ)
        snake, camel = f"{a}_{c}_{b}", a + c.capitalize() + b.capitalize()
        item, limit, acc = (
            self.pick(_NOUNS),
            r.randint(2, 512),
            self.pick(["total", "count", "result", "acc", "sum"]),
        )
        cmp = self.pick(["<", ">", "<=", ">=", "=="])
        if lang == "javascript":
            return (
                f"// {a.capitalize()} every {c} {b} in the list.\nfunction {camel}({item}s, limit = {limit}) {{\n"
                f"  let {acc} = 0;\n  for (const {item} of {item}s) {{\n    if ({item}.size {cmp} limit) {{\n"
                f"      {acc} += {item}.weight;\n    }}\n  }}\n  return {acc};\n}}"
            )
        if lang == "c":
            return (
                f"/* {a} the {c} {b}s */\nstatic int {snake}(const int *{item}s, size_t n) {{\n"
                f"    int {acc} = 0;\n    for (size_t i = 0; i < n; i++) {{\n        if ({item}s[i] {cmp} {limit}) {{\n"
                f"            {acc} += {item}s[i];\n        }}\n    }}\n    return {acc};\n}}"
            )
        if lang == "java":
            return (
                f"/** {a.capitalize()} the {c} {b}s. */\npublic static int {camel}(List<Integer> {item}s) {{\n"
                f"    int {acc} = 0;\n    for (int {item} : {item}s) {{\n        if ({item} {cmp} {limit}) {{\n"
                f"            {acc} += {item};\n        }}\n    }}\n    return {acc};\n}}"
            )
        if lang == "rust":
            return (
                f"/// {a.capitalize()} the {c} {b}s.\nfn {snake}({item}s: &[i64]) -> i64 {{\n"
                f"    let mut {acc} = 0;\n    for {item} in {item}s.iter() {{\n        if *{item} {cmp} {limit} {{\n"
                f"            {acc} += {item};\n        }}\n    }}\n    {acc}\n}}"
            )
        if lang == "go":
            return (
                f"// {camel} will {a} the {c} {b}s.\nfunc {camel}({item}s []string) int {{\n"
                f"\t{acc} := 0\n\tfor _, {item} := range {item}s {{\n\t\tif len(strings.TrimSpace({item})) {cmp} {limit} {{\n"
                f"\t\t\t{acc}++\n\t\t}}\n\t}}\n\tfmt.Println({acc})\n\treturn {acc}\n}}"
            )
        if lang == "shell":
            return (
                f'# {a} the {c} {b} files\n{snake}() {{\n  local {acc}=0\n  for f in "$1"/*.{b[:3]}; do\n'
                f'    if [ "$(wc -l < "$f")" -gt {limit} ]; then\n      {acc}=$(({acc} + 1))\n    fi\n  done\n'
                f'  echo "${{{acc}}}"\n}}'
            )
        return (
            f'def {snake}({item}s, limit={limit}):\n    """{a.capitalize()} the {c} {b}s."""\n'
            f"    {acc} = 0\n    for {item} in {item}s:\n        if {item}.size {cmp} limit:\n"
            f"            {acc} += {item}.weight\n    return {acc}"
        )

    # ---- evaluation questions
    def arc_question(self) -> tuple[str, list[str], str]:
        r = self.rng
        name, obj = (
            self.name(),
            self.pick(
                [
                    "metal spoon",
                    "wooden block",
                    "glass marble",
                    "plastic cup",
                    "rubber ball",
                    "ice cube",
                    "paper clip",
                    "steel nail",
                ]
            ),
        )
        forms = [
            (
                f"{name} places {'an' if obj[0] in 'aeiou' else 'a'} {obj} in a bowl of water that {self.name()} heated to {r.randint(5, 80)} degrees Celsius in {self.place()}. After {r.randint(2, 90)} minutes, which property of the {obj} best explains what {name} sees?",
                ["its density", "its color", "its smell", "its price"],
                0,
            ),
            (
                f"A class in {self.place()} led by {name} measured the shadow of a {r.randint(2, 40)} meter pole near {self.place()} every hour for {r.randint(3, 12)} hours. Why does the shadow that {self.name()} recorded change length between {r.randint(7, 11)} and {r.randint(1, 5)} o'clock?",
                [
                    "the rotation of Earth",
                    "the phases of the Moon",
                    "the wind speed",
                    "the ocean tides",
                ],
                0,
            ),
            (
                f"{name} leaves {'an' if obj[0] in 'aeiou' else 'a'} {obj} outside in {self.place()} during {self.pick(['July', 'January', 'April', 'October'])}. After {r.randint(2, 9)} hours it feels {self.pick(['warmer', 'colder'])} than the air around it to {self.name()}. Which form of energy transfer explains what {name} observes?",
                ["conduction", "magnetism", "sound", "photosynthesis"],
                0,
            ),
            (
                f"If the main food source of the {_plural(self.pick(_TOPICS['pets']))} living near {self.place()} disappears over {r.randint(2, 20)} years, what is most likely to happen by {r.randint(2030, 2090)} to the population that {name} studies?",
                [
                    "the population decreases",
                    "the population doubles",
                    "the animals become plants",
                    "nothing changes at all",
                ],
                0,
            ),
            (
                f"{name} mixes {r.randint(10, 90)} grams of salt into {r.randint(100, 900)} milliliters of water in {self.place()} and stirs for {r.randint(10, 120)} seconds until {name} can no longer see it. Which statement best describes what {name} made in the {self.pick(['jar', 'glass', 'beaker', 'pot', 'bottle'])}?",
                [
                    "a solution has formed",
                    "the salt was destroyed",
                    "the water became a solid",
                    "a new element was created",
                ],
                0,
            ),
        ]
        q, choices, correct = self.pick(forms)
        order = list(range(4))
        r.shuffle(order)
        shuffled = [choices[i] for i in order]
        return q, shuffled, "ABCD"[order.index(correct)]

    def gsm_question(self) -> tuple[str, str]:
        r = self.rng
        n1, n2 = self.name(), self.name()
        item = _plural(self.pick(_TOPICS["cooking"] + _TOPICS["garden"]))
        a, b, c = r.randint(3, 40), r.randint(2, 12), r.randint(1, 30)
        forms = [
            (
                f"{n1} buys {a} boxes of {item}, and each box holds {b} {item}. {n1} gives {c} {item} to {n2}. How many {item} does {n1} have left?",
                a * b - c,
            ),
            (
                f"{n1} has {a} {item} and {n2} has {b} times as many. Together they sell {c} {item} at the market in {self.place()}. How many {item} do they have now?",
                a + a * b - c,
            ),
            (
                f"A shop in {self.place()} sells {item} for {b} dollars each. {n1} spends {a * b} dollars on {item} and then returns {min(c, a)} of them. How many {item} does {n1} keep?",
                a - min(c, a),
            ),
            (
                f"{n1} walks {a} kilometers on Monday and {b} kilometers more on Tuesday than on Monday. How many kilometers does {n1} walk on the two days in total?",
                2 * a + b,
            ),
        ]
        q, ans = self.pick(forms)
        return q, str(ans)


def _shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    words = re.sub(r"[^\w\s]", "", text.lower()).split()
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def jaccard(a: str, b: str, n: int = 5) -> float:
    """Jaccard similarity of word n-gram shingles (lowercased, punctuation removed)."""
    sa, sb = _shingles(a, n), _shingles(b, n)
    return len(sa & sb) / max(1, len(sa | sb))


def _stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _python_files() -> list[Path]:
    """Standard library .py files (sorted, tests excluded) for code documents."""
    root = _stdlib_root()
    out = []
    for p in sorted(root.glob("*.py")) + sorted(root.glob("*/*.py")):
        rel = p.relative_to(root).as_posix()
        # codec tables (encodings/) are near-identical to each other: they would be unlabelled
        # near duplicates
        if any(part in rel for part in ("test", "site-packages", "idlelib", "encodings")):
            continue
        try:
            if 2_000 < p.stat().st_size < 400_000:
                out.append(p)
        except OSError:
            continue
    return out


# ------------------------------------------------------------------------------- writing


def _doc_id(seed: int, source: str, i: int) -> str:
    return hashlib.sha1(f"{seed}/{source}/{i}".encode()).hexdigest()[:20]


def _dates(rng: random.Random, seed: int) -> tuple[str, str | None]:
    base = 2024 + seed % 3
    added = f"{base}-{1 + seed % 12:02d}-{1 + seed % 28:02d}T00:00:00.000Z"
    if rng.random() < 0.15:
        return added, None
    y, m, d = rng.randint(2013, base - 1), rng.randint(1, 12), rng.randint(1, 28)
    return added, f"{y}-{m:02d}-{d:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00.000Z"


def _record(
    doc_id: str, text: str, source: str, added: str, created: str | None, metadata
) -> bytes:
    rec = {"id": doc_id, "text": text, "source": source, "added": added, "created": created}
    if metadata is not None:
        rec["metadata"] = metadata
    return orjson.dumps(rec)


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True).compress(data)


def _write(path: Path, data: bytes) -> None:
    """Write a file atomically (temporary name, then rename)."""
    from mixer.io import write_bytes_atomic

    write_bytes_atomic(path, data)


def _jsonl(rows) -> bytes:
    return b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in rows)


# Malformed lines planted inside main shards: (reason, raw line bytes).
def _planted_bad_lines(source: str) -> list[tuple[str, bytes]]:
    if source == "web":
        return [
            (
                "invalid_json",
                b'{"id": "web-broken-1", "text": "an unterminated string, "source": "web"',
            ),
            (
                "missing_text",
                b'{"id": "web-broken-2", "source": "web", "added": "2024-01-01T00:00:00.000Z"}',
            ),
            ("missing_id", b'{"id": "", "text": "A page whose id is empty.", "source": "web"}'),
        ]
    return [
        (
            "invalid_utf8",
            b'{"id": "math-broken-1", "text": "Solve \xff\xfe for $x$.", "source": "math"}',
        ),
        ("text_not_string", b'{"id": "math-broken-2", "text": 42, "source": "math"}'),
    ]


def _malformed_files(out: Path, w: _Writer, seed: int) -> dict:
    """Shards for ingest tests; returns expected counts per file (relative path -> counts)."""
    r = w.rng
    counts: dict[str, dict] = {}

    def good_line(i: int, tag: str) -> bytes:
        _, topic = w.topic()
        added, created = _dates(r, seed)
        return _record(
            f"{tag}-{i:04d}", w.paragraph(topic, 2, 4), "malformed", added, created, {"lang": "en"}
        )

    # 1. plain .jsonl with every line-level bad case and a truncated last line
    lines: list[tuple[str | None, bytes]] = [(None, good_line(i, "mixed")) for i in range(40)]
    bad = [
        ("invalid_json", b"{not json at all"),
        ("invalid_json", b'{"id": "mixed-x1", "text": "trailing comma",}'),
        ("invalid_json", b"[1, 2, 3"),
        ("invalid_utf8", b'{"id": "mixed-u1", "text": "caf\xe9 au lait", "source": "malformed"}'),
        (
            "invalid_utf8",
            b'{"id": "mixed-u2", "text": "\xc3\x28 broken sequence", "source": "malformed"}',
        ),
        ("missing_text", b'{"id": "mixed-m1", "source": "malformed"}'),
        ("missing_text", b'{"id": "mixed-m2", "text": null}'),
        ("text_not_string", b'{"id": "mixed-m3", "text": ["a", "list"]}'),
        ("text_not_string", b'{"id": "mixed-m4", "text": 3.5}'),
        ("not_an_object", b"[1, 2, 3]"),
        ("not_an_object", b'"just a string"'),
        ("missing_id", b'{"text": "No id field here."}'),
        ("missing_id", b'{"id": "", "text": "Empty id."}'),
        ("missing_id", b'{"id": null, "text": "Null id."}'),
    ]
    for k, item in enumerate(bad):
        lines.insert(3 + k * 3, item)
    # a good line that reuses an id: counted as good, reported as a duplicate id
    lines.insert(
        20,
        (
            None,
            _record(
                "mixed-0005",
                "A second record with a repeated id.",
                "malformed",
                "2024-01-01T00:00:00.000Z",
                None,
                None,
            ),
        ),
    )
    full_last = good_line(99, "mixed")
    lines.append(("truncated_line", full_last[: len(full_last) // 2]))
    data = b"\n".join(raw for _, raw in lines)  # no newline after the truncated last line
    _write(out / "malformed" / "mixed.jsonl", data)
    counts["malformed/mixed.jsonl"] = _count(lines, duplicate_ids=1)

    # 2. a .jsonl.gz cut mid-stream
    gz_lines = [good_line(i, "gz") for i in range(300)]
    raw = b"".join(line + b"\n" for line in gz_lines)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0) as g:
        g.write(raw)
    comp = buf.getvalue()
    cut = len(comp) * 3 // 5
    while True:
        dec = zlib.decompressobj(wbits=31).decompress(comp[:cut])
        if not dec.endswith(b"\n") and dec:
            break
        cut += 7
    n_good = dec.count(b"\n")
    _write(out / "malformed" / "truncated.jsonl.gz", comp[:cut])
    counts["malformed/truncated.jsonl.gz"] = {
        "lines_total": n_good + 1,
        "good_lines": n_good,
        "bad_lines": {"corrupt_stream": 1},
        "bad_lines_detail": {"corrupt_stream": 1},
    }

    # 3. a .jsonl.zst cut mid-stream; flushed in small blocks so a prefix decodes
    zs_lines = [good_line(i, "zst") for i in range(300)]
    raw = b"".join(line + b"\n" for line in zs_lines)
    cobj = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compressobj()
    pieces = []
    for off in range(0, len(raw), 4096):
        pieces.append(cobj.compress(raw[off : off + 4096]))
        pieces.append(cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK))
    pieces.append(cobj.flush())
    comp = b"".join(pieces)
    cut = len(comp) * 3 // 5
    while True:
        dobj = zstandard.ZstdDecompressor().decompressobj()
        dec = dobj.decompress(comp[:cut])
        if dec and not dec.endswith(b"\n"):
            break
        cut += 5
    n_good = dec.count(b"\n")
    _write(out / "malformed" / "truncated.jsonl.zst", comp[:cut])
    counts["malformed/truncated.jsonl.zst"] = {
        "lines_total": n_good + 1,
        "good_lines": n_good,
        "bad_lines": {"corrupt_stream": 1},
        "bad_lines_detail": {"corrupt_stream": 1},
    }
    return counts


# Line-level reasons as `mixer ingest` names them -> the coarse reason families of issue 2.
REASON_FAMILY = {
    "invalid_json": "invalid_json",
    "invalid_utf8": "invalid_utf8",
    "missing_text": "missing_text",
    "text_not_string": "missing_text",
    "not_an_object": "missing_text",
    "missing_id": "missing_id",
    "truncated_line": "truncated",
    "corrupt_stream": "corrupt_stream",
}


def _count(lines: list[tuple[str | None, bytes]], duplicate_ids: int = 0) -> dict:
    """Expected ingest counts of one file: coarse `bad_lines` and fine `bad_lines_detail`."""
    detail: dict[str, int] = {}
    for reason, _ in lines:
        if reason:
            detail[reason] = detail.get(reason, 0) + 1
    family: dict[str, int] = {}
    for reason, n in detail.items():
        family[REASON_FAMILY[reason]] = family.get(REASON_FAMILY[reason], 0) + n
    out = {
        "lines_total": len(lines),
        "good_lines": len(lines) - sum(detail.values()),
        "bad_lines": dict(sorted(family.items())),
        "bad_lines_detail": dict(sorted(detail.items())),
    }
    if duplicate_ids:
        out["duplicate_ids"] = duplicate_ids
    return out


def _remove_stale_shards(out: Path, written: set[str]) -> None:
    """Delete our own shards left by an earlier run at a larger scale (web-0007 after a rerun
    at scale 0.05), so a folder never mixes two corpora. Only files named like ours go."""
    for source in SOURCES:
        for p in (out / source).glob(f"{source}-[0-9][0-9][0-9][0-9].jsonl.zst"):
            if f"{source}/{p.name}" not in written:
                p.unlink()


def _scaled(n: int, scale: float, minimum: int = 2) -> int:
    return max(minimum, round(n * scale))


def _near_copy(w: _Writer, text: str, topic: list[str]) -> str:
    """Change about 2% of the words (at least one), keeping the layout: Jaccard mostly >= 0.8."""
    r = w.rng
    tokens = re.split(r"( +)", text)
    word_pos = [i for i, t in enumerate(tokens) if t.strip() and t.isalpha()]
    k = max(1, len(word_pos) // 50)  # each change breaks <= 5 shingles: J >= ~0.82
    for i in r.sample(word_pos, min(k, len(word_pos))):
        pool = topic if r.random() < 0.5 else _ADJ
        vowel = tokens[i][0].lower() in "aeiou"
        for _ in range(10):  # keep "a"/"an" right: same kind of first letter
            new = w.pick(pool)
            if (new[0] in "aeiou") == vowel:
                break
        tokens[i] = new
    return "".join(tokens)


def _case_punct(q: str, r: random.Random) -> str:
    """The question with changed case and punctuation (what decontamination must normalise)."""
    q2 = re.sub(r"[?.,!]", "", q)
    return q2.lower() if r.random() < 0.6 else q2.upper()


def generate(out_dir, seed: int = 0, scale: float = 1.0) -> dict:
    """Write the sample corpus under out_dir and return a summary (files, docs, ground truth)."""
    out = Path(out_dir)
    rng = random.Random(seed)
    w = _Writer(rng)
    py_files = _python_files()
    labels: list[dict] = []
    per_source: dict[str, list[tuple[str, bytes]]] = {s: [] for s in SOURCES}  # (id, line)
    counters = dict.fromkeys(SOURCES, 0)

    def add(
        source: str, text: str, kind: str, lang: str = "en", quality: bool = False, metadata="auto"
    ) -> str:
        doc_id = _doc_id(seed, source, counters[source])
        counters[source] += 1
        added, created = _dates(rng, seed)
        if metadata == "auto":
            roll = rng.random()
            if roll < 0.1:
                metadata = None
            elif source == "web":
                metadata = {
                    "url": f"https://www.{w.name().lower()}{w.pick(_NOUNS)}.{w.pick(TLDS)}/{w.pick(_NOUNS)}/{rng.randint(1, 99999)}",
                    "lang": lang,
                }
            else:
                metadata = {"lang": lang}
        per_source[source].append((doc_id, _record(doc_id, text, source, added, created, metadata)))
        labels.append(
            {
                "id": doc_id,
                "source": source,
                "domain": source,
                "lang": lang,
                "kind": kind,
                "expected_web_quality": quality,
            }
        )
        return doc_id

    # ---- evaluation sets
    seen_grams: set = set()

    def fresh(make):
        """A question sharing no 13-word n-gram with earlier ones, so each planted question
        points at exactly one eval item."""
        for _ in range(50):
            made = make()
            grams = _shingles(made[0], DECON_NGRAM)
            if not grams & seen_grams:
                break
        seen_grams.update(grams)
        return made

    arc = []
    for i in range(_scaled(EVAL_SIZES["arc_like"], scale, 10)):
        q, choices, ans = fresh(w.arc_question)
        arc.append({"id": f"arc_like-{i:04d}", "question": q, "choices": choices, "answer": ans})
    gsm = []
    for i in range(_scaled(EVAL_SIZES["gsm_like"], scale, 10)):
        q, ans = fresh(w.gsm_question)
        gsm.append({"id": f"gsm_like-{i:04d}", "question": q, "answer": ans})
    evals = {"arc_like": arc, "gsm_like": gsm}

    # ---- web
    shared_paragraphs = [
        w.fill(
            "Thanks for reading! New posts about {TS} and {TS} go out every {TIME}, and you can reply to any of them with your own {A} ideas. We read every message we get.",
            list(_TOPICS[t]),
        )
        for t in ("travel", "cooking", "garden", "home")
    ]
    shared_members: dict[int, list[str]] = {i: [] for i in range(len(shared_paragraphs))}
    originals: list[tuple[str, str, list[str]]] = []  # (id, text, topic) of good prose pages
    contamination: list[dict] = []
    web_kinds = {k: _scaled(n, scale) for k, n in WEB_KINDS.items()}
    plan = [k for k, n in web_kinds.items() for _ in range(n)]
    rng.shuffle(plan)
    foreign_langs = ["fr", "de", "es", "fr", "de", "es", "zh", "ja", "ar", "he", "ru"]
    eval_pool = [(e["id"], e["question"]) for e in arc + gsm]
    for kind in plan:
        _, topic = w.topic()
        if kind == "good_prose":
            text = w.good_prose(topic)
            doc_id = add("web", text, kind, quality=True)
            originals.append((doc_id, text, topic))
        elif kind == "shared_boilerplate":
            k = rng.randrange(len(shared_paragraphs))
            text = w.good_prose(topic, (3, 6)) + "\n\n" + shared_paragraphs[k]
            shared_members[k].append(add("web", text, kind, quality=True))
        elif kind == "contaminated":
            eval_id, q = eval_pool[rng.randrange(len(eval_pool))]
            verbatim = rng.random() < 0.6
            shown = q if verbatim else _case_punct(q, rng)
            paras = [w.paragraph(topic) for _ in range(rng.randint(2, 4))]
            paras.insert(
                rng.randint(0, len(paras)),
                w.pick(
                    [
                        "Here is a question from our homework tonight: ",
                        "Can anyone help with this one? ",
                        "",
                    ]
                )
                + shown,
            )
            doc_id = add("web", "\n\n".join(paras), kind, quality=True)
            contamination.append(
                {"id": doc_id, "eval_id": eval_id, "kind": "verbatim" if verbatim else "case_punct"}
            )
        elif kind == "non_english":
            lang = w.pick(foreign_langs)
            add("web", w.foreign(lang), kind, lang=lang)
        else:
            add("web", getattr(w, kind)(topic), kind)

    # duplicate clusters: an original good-prose page plus exact and near copies
    duplicates: list[dict] = []
    n_clusters = min(_scaled(DUP_CLUSTERS, scale), len(originals))
    for c, idx in enumerate(sorted(rng.sample(range(len(originals)), n_clusters))):
        orig_id, text, topic = originals[idx]
        cluster = f"dup-{c:05d}"
        duplicates.append({"id": orig_id, "cluster": cluster, "kind": "original", "jaccard": 1.0})
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            if rng.random() < 0.5:
                copy_id = add("web", text, "duplicate", quality=True)
                duplicates.append(
                    {"id": copy_id, "cluster": cluster, "kind": "exact", "jaccard": 1.0}
                )
            else:
                for _ in range(5):  # rarely a change lands badly: redraw to keep J >= 0.8
                    near = _near_copy(w, text, topic)
                    if jaccard(text, near) >= 0.8:
                        break
                copy_id = add("web", near, "near_duplicate", quality=True)
                duplicates.append(
                    {
                        "id": copy_id,
                        "cluster": cluster,
                        "kind": "near",
                        "jaccard": round(jaccard(text, near), 4),
                    }
                )

    # ---- domains
    for _ in range(_scaled(DOMAIN_DOCS["math"], scale)):
        add("math", w.math_doc(), "math")
    for _ in range(_scaled(DOMAIN_DOCS["code"], scale)):
        text, meta = w.code_doc(py_files)
        add("code", text, "code", lang="code", metadata=meta)
    for _ in range(_scaled(DOMAIN_DOCS["academic"], scale)):
        add("academic", w.academic_doc(), "academic")
    for _ in range(_scaled(DOMAIN_DOCS["qa_forum"], scale)):
        add("qa_forum", w.qa_doc(), "qa_forum")
    for _ in range(_scaled(DOMAIN_DOCS["instruction"], scale)):
        add("instruction", w.instruction_doc(), "instruction")
    for _ in range(_scaled(DOMAIN_DOCS["encyclopedic"], scale)):
        add("encyclopedic", w.encyclopedic_doc(), "encyclopedic")

    # ---- write shards (web documents shuffled so copies land in other shards)
    files: list[str] = []
    malformed_counts: dict[str, dict] = {}
    for source, docs in per_source.items():
        if source == "web":
            rng.shuffle(docs)
            n_shards = max(2, min(WEB_SHARDS, round(WEB_SHARDS * scale)))
        else:
            n_shards = 2 if scale >= 0.5 and source in ("math", "instruction") else 1
        per = math.ceil(len(docs) / n_shards)
        for s in range(n_shards):
            chunk = docs[s * per : (s + 1) * per]
            lines: list[tuple[str | None, bytes]] = [(None, line) for _, line in chunk]
            if s == 0 and source in ("web", "math"):
                for k, (reason, raw) in enumerate(_planted_bad_lines(source)):
                    lines.insert(min(len(lines), 5 + k * 7), (reason, raw))
            rel = f"{source}/{source}-{s:04d}.jsonl.zst"
            _write(out / rel, _zstd(b"".join(raw + b"\n" for _, raw in lines)))
            files.append(rel)
            malformed_counts[rel] = _count(lines)

    for name, rows in evals.items():
        rel = f"eval/{name}.jsonl"
        _write(out / rel, _jsonl(rows))
        files.append(rel)

    malformed_counts.update(_malformed_files(out, w, seed))
    files += [f for f in malformed_counts if f.startswith("malformed/")]
    _remove_stale_shards(out, set(files))

    gt = out / "ground_truth"
    _write(gt / "labels.jsonl", _jsonl(labels))
    _write(gt / "duplicates.jsonl", _jsonl(duplicates))
    _write(gt / "contamination.jsonl", _jsonl(contamination))
    _write(
        gt / "shared_paragraphs.json",
        orjson.dumps(
            [{"paragraph": p, "ids": shared_members[i]} for i, p in enumerate(shared_paragraphs)],
            option=orjson.OPT_INDENT_2,
        )
        + b"\n",
    )
    _write(
        gt / "malformed.json",
        orjson.dumps(malformed_counts, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n",
    )
    files += [
        f"ground_truth/{n}"
        for n in (
            "labels.jsonl",
            "duplicates.jsonl",
            "contamination.jsonl",
            "shared_paragraphs.json",
            "malformed.json",
        )
    ]

    kinds: dict[str, int] = {}
    for lab in labels:
        kinds[lab["kind"]] = kinds.get(lab["kind"], 0) + 1
    summary = {
        "seed": seed,
        "scale": scale,
        "files": sorted(files),
        "docs": {s: len(d) for s, d in per_source.items()},
        "total_docs": len(labels),
        "kinds": dict(sorted(kinds.items())),
        "ground_truth": {
            "duplicate_clusters": n_clusters,
            "duplicate_copies": sum(1 for d in duplicates if d["kind"] != "original"),
            "contaminated": len(contamination),
            "eval_questions": {k: len(v) for k, v in evals.items()},
            "malformed_lines_in_sample_shards": sum(
                sum(c["bad_lines"].values())
                for f, c in malformed_counts.items()
                if not f.startswith("malformed/")
            ),
        },
    }
    _write(out / "summary.json", orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m mixer.devtools.sample_data",
        description="Write the seeded sample corpus (Dolma-format JSONL.zst shards plus ground truth).",
    )
    ap.add_argument("--out", required=True, help="output folder (e.g. sample_data)")
    ap.add_argument(
        "--seed", type=int, default=0, help="random seed (same seed + scale => identical bytes)"
    )
    ap.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="size multiplier: 1.0 ~ 15k documents, 0.05 ~ a tiny test corpus",
    )
    args = ap.parse_args(argv)
    if args.scale <= 0:
        ap.error("--scale must be > 0")
    summary = generate(args.out, seed=args.seed, scale=args.scale)
    print(
        f"wrote {summary['total_docs']} documents in {len(summary['files'])} files under {args.out}: "
        + ", ".join(f"{k}={v}" for k, v in summary["docs"].items())
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
