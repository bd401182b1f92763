"""Generated data in the shapes of the five seed runs, so their recipes run offline: our own made-up texts.

Each seed recipe (``recipes/*.yaml``) mirrors a real sentence-transformers run whose data is not ours to ship.
These generators write small files with the same columns, types and kind of texts (in English), built from
hand-written vocabulary and templates in this file, deterministic given ``seed``:

- 000 ``speeches_{train,dev}.jsonl``: ``anchor`` (a short topic), ``positive`` (a multi-sentence political
  speech on that topic), ``negative`` (an unrelated customer review).
- 001 ``farming_qa_train.jsonl``: ``sentence_0`` (a farmer's question), ``sentence_1`` (the answer),
  ``label`` (always 1.0, as in the seed; MNRL does not use it).
- 002 ``jobs_triplets_{train,test}.jsonl`` (``sentence_0/1/2``: a home-improvement job, the same job in
  other words, another job), ``jobs_pairs_train.jsonl`` (``sentence_0``, ``sentence_1`` = ``"query: "`` +
  a paraphrase) and ``jobs_scored_train.jsonl`` (``sentence_0``, ``sentence_1``, ``label`` in 0..1).
- 003 ``school_pages_train.jsonl``: ``sentence_0`` and ``sentence_1`` are records {page_name, section_title,
  section_type, text, url} of study-programme pages; ``label`` 1.0 for two sections of the same page,
  0.0 for sections of different pages.
- 004 ``course_qa_train.jsonl``: ``sentence_0`` (a question about a course), ``sentence_1`` (an answer),
  ``label`` 1.0 when the answer answers it, 0.0 for another course's answer or another question's answer.

``generate.py`` writes the files next to itself, where the recipes (``path: data/speeches_train.jsonl``)
find them.
"""

from __future__ import annotations

import random
from collections.abc import Callable

FILES = (
    "speeches_train.jsonl", "speeches_dev.jsonl", "farming_qa_train.jsonl",
    "jobs_triplets_train.jsonl", "jobs_pairs_train.jsonl", "jobs_scored_train.jsonl", "jobs_triplets_test.jsonl",
    "school_pages_train.jsonl", "course_qa_train.jsonl",
)  # fmt: skip

# --- 000: speeches by topic, and unrelated reviews --------------------------------------------------------

# topic -> (ways to name it, sentences a speech on it may contain); {n} / {year} are filled in.
SPEECH_TOPICS: dict[str, tuple[list[str], list[str]]] = {
    "public finances": (["Public finances and savings", "Balancing the budget", "Funding public spending"], [
        "The budget must balance, and every new promise needs money behind it.",
        "We will find {n} billion in savings without cutting a single nurse.",
        "Our economy has room for only a few new priorities before {year}.",
        "Sound public finances are what let us act when the next crisis comes.",
        "We ask everyone who can to contribute a little more so the books add up."]),
    "defence": (["Defence and security", "Strengthening the armed forces", "Military support for allies"], [
        "We will spend two percent of our national income on defence, and sooner than planned.",
        "Our soldiers train side by side with our allies, and we are proud of them.",
        "The threats against our small country are greater than they have been in decades.",
        "We keep our promises to the alliance that has guarded our freedom since the war.",
        "More money for the armed forces is the price of safety in an uncertain time."]),
    "climate": (["The green transition", "Climate targets and wind power", "Cutting emissions"], [
        "We must leave coal, oil and gas behind, and faster than we thought.",
        "Half of our electricity already comes from wind turbines at sea.",
        "Our climate target for {year} is ambitious, and we intend to reach it.",
        "Farmers, factories and families all have a part in cutting emissions.",
        "The energy islands we build will light homes across the continent."]),
    "health care": (["Waiting lists in hospitals", "A stronger health service", "Health care and psychiatry"], [
        "Too many patients wait too long for an operation, and that must change.",
        "We will hire {n} thousand more nurses over the coming years.",
        "Psychiatry has been the poor relation of our health service for too long.",
        "The emergency wards are under pressure every single night.",
        "A child with a mental illness should not wait months for help."]),
    "elder care": (["Care for the elderly", "Dignity in old age", "Nursing homes and home help"], [
        "Our parents built this country, and they deserve dignity in old age.",
        "Home helpers need time to talk, not only a stopwatch and a checklist.",
        "Every nursing home should smell of fresh food cooked in its own kitchen.",
        "Loneliness among the elderly is a quiet crisis in many towns.",
        "We will give care workers more freedom to decide what the day needs."]),
    "schools": (["A better primary school", "Practical learning in schools", "Teachers and pupils"], [
        "Children learn best when they also get to use their hands.",
        "We will give teachers more time for each pupil and less paperwork.",
        "Too many young people leave school without being able to read well.",
        "The school day should leave room for play, music and workshops.",
        "Every class deserves a qualified teacher in front of the board."]),
    "pensions": (["Early retirement for worn-out workers", "The pension age", "Fair pensions"], [
        "A bricklayer with a worn-out back should be able to retire earlier.",
        "The pension age cannot keep rising forever without any exceptions.",
        "Those who started working at sixteen have earned the right to stop sooner.",
        "We stand by the pension agreement, and we will vote for it next year.",
        "A fair pension system takes account of how hard a working life has been."]),
    "jobs": (["Employment and business", "More people in work", "Labour shortages"], [
        "It must always pay to work, and we will make sure it does.",
        "Firms across the country are crying out for skilled hands.",
        "We aim for {n} thousand more people in jobs by {year}.",
        "Nobody who can work should be left outside the community of the workplace.",
        "Our exports and our companies are the foundation of our prosperity."]),
    "recruitment to care work": (["Shortage of care workers", "Recruiting nurses and pedagogues"], [
        "Fewer young people apply to become nurses, teachers or social workers.",
        "Two in five care assistants will retire within ten years.",
        "Pay and working conditions must be part of the answer to the shortage.",
        "Working with people is among the finest things one can be trained for.",
        "Without enough hands, our welfare society will crumble before our eyes."]),
    "housing": (["Affordable housing", "Housing policy in the cities"], [
        "A nurse should be able to afford a flat in the city where she works.",
        "We will build {n} thousand affordable homes over the next decade.",
        "Rents in the big cities have risen far faster than wages.",
        "No neighbourhood should be left behind with empty shops and broken lifts.",
        "Young families are pushed out of the towns they grew up in."]),
    "inflation": (["Rising prices and inflation", "Help for families with high bills"], [
        "Prices in the supermarket have risen more than many families can bear.",
        "We will present a targeted package to help households with high energy bills.",
        "Inflation has fallen in recent months, but it is still far too high.",
        "The help must reach those who need it most, and only for a limited time.",
        "Families feel the high prices every time they fill the shopping basket."]),
    "crime": (["Safety and crime", "A safer society after the attack"], [
        "Everyone should be able to go to a concert without fear.",
        "We will put more police officers on the streets of our towns.",
        "Gang violence has no place in our neighbourhoods.",
        "The tragedy last Sunday will never leave us, but it will not divide us.",
        "Victims of crime must be heard and helped, not forgotten."]),
    "public sector management": (["Managing the public sector", "Less bureaucracy in welfare"], [
        "We are ready to break with the mindless micromanagement of the public sector.",
        "Nurses spend too many hours filling in forms nobody reads.",
        "Trust the people who do the work, and cut the rules that get in their way.",
        "We will scrap {n} reporting requirements for the municipalities.",
        "The public sector needs fewer targets and more common sense."]),
    "youth": (["Young people and their future", "Wellbeing among the young"], [
        "Too many young people feel lonely, anxious and under pressure.",
        "We should scrap the cuts to the education of the young.",
        "The young ask us to act on the climate, and we must answer them.",
        "Every young person needs an education or a job after school.",
        "Social media has changed childhood, and not only for the better."]),
    "foreign policy": (["Foreign policy and Europe", "Our place in Europe", "Support for Ukraine"], [
        "Ukraine fights for its freedom, and our support will not waver.",
        "A strong Europe is in the interest of a small country like ours.",
        "We will work with our neighbours in the north on energy and security.",
        "The war on our continent has changed how we see the world.",
        "We send weapons, money and training, for as long as it takes."]),
    "agriculture": (["Farming and the countryside", "A green deal for agriculture"], [
        "Our farmers produce some of the most climate-friendly food in the world.",
        "A tax on emissions from farming must not drive farms out of the country.",
        "Rural towns need schools, doctors and bus routes to stay alive.",
        "We will set aside {n} thousand hectares of low-lying land for nature.",
        "Clean drinking water and healthy fjords matter to every farmer too."]),
    "research": (["Research and innovation", "Investing in science"], [
        "We will invest {n} billion in green research and new technology.",
        "Universities and companies must work more closely together.",
        "Life science is one of our strongest industries, and it can grow further.",
        "Good ideas need patient money, and the state can provide it.",
        "Our researchers are among the best in the world in their fields."]),
    "integration": (["Integration and immigration", "Refugees and integration"], [
        "Everyone who lives here must learn the language and take part in work.",
        "Integration succeeds at the workplace, in the school and in the sports club.",
        "We want a strict but fair immigration policy.",
        "Refugees who are granted protection must be met with clear demands.",
        "Parallel societies in our cities are not acceptable."]),
}
SPEECH_OPENERS = [
    "Thank you all for being here today.", "Dear friends.", "Let me begin with a word of thanks.",
    "I have looked forward to this day.", "It is good to see so many of you here.",
    "Mr. Speaker, let me be clear.", "Good evening, everyone.",
]
SPEECH_BRIDGES = [
    "Let me be honest.", "That is why we act now.", "I know that not everyone agrees.",
    "This is not a small thing.", "We cannot do it alone.", "And let me say this plainly.",
    "The challenge is the same whoever governs after the election.", "So what do we do?",
]
SPEECH_CLOSERS = [
    "Thank you.", "Together we can do it.", "That is my promise to you today.",
    "Denmark can do more, and we will show it.", "I look forward to the work ahead.",
]
REVIEW_PARTS = (
    ["Fast delivery.", "Great service.", "The package arrived two days late.", "Friendly staff on the phone.",
     "Ordered on Saturday, it came on Tuesday.", "Good prices and quick shipping.",
     "I was nervous after the mixed reviews.", "Excellent treatment at the clinic.", "The shop was clean."],
    ["Everything was well packed and the colours were sharp.", "My shoulders feel much better after two visits.",
     "The cleaner is flexible and listens.", "The phone was repaired within a week.",
     "They answered my email the same day.", "The replacement part fit perfectly.",
     "Hygiene was top notch.", "The courier called before he came."],
    ["Can recommend.", "Will order again.", "Very satisfied.", "Five stars from me.", "A bit slow, but fine.",
     "I cannot recommend them enough!", "Good value for money.", ""],
)


def _speech(topic: str, rng: random.Random) -> str:
    sentences = rng.sample(SPEECH_TOPICS[topic][1], rng.randint(2, 5))
    if rng.random() < 0.3:  # speeches wander: one sentence about another topic
        other = rng.choice([t for t in SPEECH_TOPICS if t != topic])
        sentences.insert(rng.randint(1, len(sentences)), rng.choice(SPEECH_TOPICS[other][1]))
    for _ in range(rng.randint(0, 2)):
        sentences.insert(rng.randint(0, len(sentences)), rng.choice(SPEECH_BRIDGES))
    if rng.random() < 0.5:
        sentences.insert(0, rng.choice(SPEECH_OPENERS))
    if rng.random() < 0.4:
        sentences.append(rng.choice(SPEECH_CLOSERS))
    text = " ".join(sentences)
    return text.format(n=rng.choice([3, 5, 8, 12, 14, 20, 45]), year=rng.choice([2025, 2030, 2035]))


def _review(rng: random.Random) -> str:
    parts = [rng.choice(part) for part in REVIEW_PARTS]
    return " ".join(p for p in parts[: rng.randint(1, 3)] if p) or parts[0]


def speeches(n: int, rng: random.Random) -> list[dict]:
    """(topic, speech on it, unrelated review) triplets."""
    rows = []
    for _ in range(n):
        topic = rng.choice(list(SPEECH_TOPICS))
        rows.append({"anchor": rng.choice(SPEECH_TOPICS[topic][0]), "positive": _speech(topic, rng),
                     "negative": _review(rng)})
    return rows


# --- 001: farming questions and answers -------------------------------------------------------------------

# crop -> (plural for questions, planting season, weeks to harvest, spacing in cm, nutrient it needs most)
CROPS: dict[str, tuple[str, str, int, int, str]] = {
    "rice": ("rice plants", "the start of the rainy season", 16, 20, "nitrogen"),
    "tomato": ("tomato plants", "the cool dry months", 11, 60, "potassium"),
    "maize": ("maize plants", "the first rains", 14, 75, "nitrogen"),
    "chilli": ("chilli plants", "early in the dry season", 12, 45, "potassium"),
    "banana": ("banana plants", "the beginning of the wet season", 40, 250, "potassium"),
    "potato": ("potato plants", "the cool season", 15, 30, "phosphorus"),
    "onion": ("onions", "the end of the rainy season", 18, 10, "sulphur"),
    "cabbage": ("cabbages", "the cool months", 12, 45, "nitrogen"),
    "beans": ("bean plants", "after the last heavy rain", 9, 15, "phosphorus"),
    "cucumber": ("cucumber vines", "the warm season", 8, 40, "potassium"),
    "tea": ("tea bushes", "the monsoon", 150, 120, "nitrogen"),
    "coconut": ("coconut palms", "the start of the rains", 300, 750, "potassium"),
}
# problem -> (ways a farmer describes it, cause, remedies)
PROBLEMS: dict[str, tuple[list[str], str, list[str]]] = {
    "powdery mildew": (["white powder on the leaves", "a white dusty coating on the leaves"],
                       "a fungal disease called powdery mildew",
                       ["Spray wettable sulphur every ten days.", "Remove the worst leaves and leave more space "
                        "between plants so air can move.", "A spray of baking soda in water slows it down."]),
    "nitrogen deficiency": (["yellow older leaves", "pale yellow leaves at the bottom"],
                            "a lack of nitrogen in the soil",
                            ["Apply urea or well-rotted manure as a side dressing.",
                             "Grow beans or another legume in the field next season to add nitrogen."]),
    "aphids": (["small green insects under the leaves", "sticky leaves covered with tiny insects"],
               "aphids, which suck the sap of young shoots",
               ["Spray neem oil or a mild soap solution.", "Encourage ladybirds, which eat aphids.",
                "Wash them off with a strong jet of water in the morning."]),
    "root rot": (["wilting leaves although the soil is wet", "brown, soft roots"],
                 "root rot caused by waterlogged soil",
                 ["Improve drainage with raised beds or ditches.", "Water less often and only at the base.",
                  "Pull out badly affected plants so the rot does not spread."]),
    "stem borer": (["holes in the stems", "dead shoots in the centre of the plant"],
                   "stem borer larvae tunnelling inside the stems",
                   ["Cut and burn the infested stems.", "Release egg parasites such as Trichogramma.",
                    "Plant early so the crop escapes the main borer season."]),
    "leaf spot": (["brown spots with yellow rings on the leaves", "dark spots spreading over the leaves"],
                  "a leaf spot disease spread by rain splash",
                  ["Spray a copper fungicide after rain.", "Rotate crops so the disease does not build up.",
                   "Do not water the leaves, only the soil."]),
    "poor flowering": (["few flowers", "flowers that drop before they set fruit"],
                       "too much nitrogen and too little potassium, or heat stress",
                       ["Reduce nitrogen and add potash.", "Mulch to keep the roots cool.",
                        "Water evenly, never letting the soil dry out completely."]),
    "fruit rot": (["fruits that rot before harvest", "soft black patches on the fruit"],
                  "a fungal rot that enters through damaged skin",
                  ["Pick fruit as soon as it is ripe.", "Keep fruit off the ground with straw mulch.",
                   "Remove and destroy rotten fruit every week."]),
}
_NO_FRUIT = ("rice", "maize", "potato", "onion", "cabbage", "tea")
PROBLEM_SPARES: dict[str, tuple[str, ...]] = {  # problem -> crops it does not apply to
    "powdery mildew": ("rice", "maize", "banana", "coconut"),
    "aphids": ("rice", "coconut"),
    "stem borer": tuple(c for c in CROPS if c not in ("rice", "maize")),
    "poor flowering": _NO_FRUIT,
    "fruit rot": (*_NO_FRUIT, "beans", "coconut"),
}
QUESTION_TEMPLATES = [
    "My {plural} have {symptom}. What is the cause?", "My {plural} have {symptom}. What should I do?",
    "Why do my {plural} have {symptom}?", "How do I treat {symptom} in my {crop} field?",
    "This season my {crop} field shows {symptom}. How can I stop it?",
]
TOPIC_QUESTIONS = {
    "planting": (["When is the best time to plant {crop}?", "What season should I sow {crop} in?"],
                 "Plant {crop} at {season}, when the soil is moist but not flooded."),
    "spacing": (["How far apart should I plant {crop}?", "What spacing is recommended for {plural}?"],
                "Leave about {spacing} cm between {plural} so each gets enough light and air."),
    "harvest": (["How long does {crop} take before harvest?", "When can I harvest my {crop}?"],
                "You can usually harvest {crop} about {weeks} weeks after planting."),
    "fertiliser": (["Which fertiliser does {crop} need?", "What nutrient matters most for {plural}?"],
                   "For {crop} the most important nutrient is {nutrient}; apply it before planting and again "
                   "as the crop grows."),
}


def farming_qa(n: int, rng: random.Random) -> list[dict]:
    """(question, answer, 1.0) rows about crop problems, planting, spacing, harvest and fertiliser; no repeats."""
    rows, seen = [], set()
    while len(rows) < n:
        crop = rng.choice(list(CROPS))
        plural, season, weeks, spacing, nutrient = CROPS[crop]
        slots = {"crop": crop, "plural": plural, "season": season, "weeks": weeks,
                 "spacing": spacing, "nutrient": nutrient}
        problems = [p for p in PROBLEMS if crop not in PROBLEM_SPARES.get(p, ())]
        if rng.random() < 0.9:  # the general questions have few wordings: keep them rare enough to stay unique
            symptoms, cause, remedies = PROBLEMS[rng.choice(problems)]
            slots["symptom"] = rng.choice(symptoms)
            question = rng.choice(QUESTION_TEMPLATES).format(**slots)
            fixes = " ".join(rng.sample(remedies, rng.randint(1, len(remedies))))
            answer = f"When {plural} have {slots['symptom']}, the cause is usually {cause}. {fixes}"
        else:
            questions, answer_template = TOPIC_QUESTIONS[rng.choice(list(TOPIC_QUESTIONS))]
            question, answer = rng.choice(questions).format(**slots), answer_template.format(**slots)
        if (question, answer) not in seen:  # a repeated pair would be its own in-batch negative under MNRL
            seen.add((question, answer))
            rows.append({"sentence_0": question, "sentence_1": answer, "label": 1.0})
    return rows


# --- 002: home-improvement jobs ---------------------------------------------------------------------------

# object -> (trade, ways to name it, actions that apply, where it is: "in" indoors, "out" outdoors)
JOB_OBJECTS: dict[str, tuple[str, list[str], list[str], str]] = {
    "shower cabin": ("plumbing", ["shower cabin", "shower enclosure", "shower cubicle"], ["install", "replace", "remove"], "in"),
    "kitchen tap": ("plumbing", ["kitchen tap", "kitchen faucet", "sink mixer"], ["install", "replace", "repair"], ""),
    "toilet": ("plumbing", ["toilet", "WC", "toilet bowl"], ["install", "replace", "repair"], "in"),
    "drainage": ("groundwork", ["drainage around the house", "drain pipes around the foundation", "perimeter drain"], ["install", "replace", "repair"], ""),
    "garage foundation": ("groundwork", ["foundation for a garage", "garage slab", "concrete base for a garage"], ["build", "remove"], "out"),
    "garden pond": ("groundwork", ["garden pond", "pond in the garden", "small ornamental pond"], ["build", "remove"], ""),
    "roof": ("roofing", ["roof", "roof covering", "roof tiles"], ["replace", "repair", "insulate"], ""),
    "gutters": ("roofing", ["gutters", "rain gutters", "eavestroughs"], ["install", "replace", "repair"], ""),
    "floor": ("carpentry", ["wooden floor", "floorboards", "parquet"], ["install", "sand", "replace"], "in"),
    "kitchen cabinets": ("carpentry", ["kitchen cabinets", "kitchen units", "kitchen cupboards"], ["install", "replace", "remove"], ""),
    "wardrobe": ("carpentry", ["wardrobe", "built-in closet", "fitted wardrobe"], ["install", "build", "remove"], "in"),
    "fence": ("carpentry", ["fence", "garden fence", "fence posts"], ["build", "replace", "repair", "paint"], "out"),
    "terrace": ("carpentry", ["terrace", "wooden deck", "decking"], ["build", "repair", "paint"], "out"),
    "windows": ("carpentry", ["windows", "window frames", "window panes"], ["install", "replace", "paint"], "in"),
    "floor heating": ("electrical", ["floor heating", "underfloor heating", "heating cables"], ["install", "repair"], "in"),
    "wiring": ("electrical", ["electrical wiring", "old cables", "the fuse box"], ["replace", "repair"], "in"),
    "heat pump": ("electrical", ["heat pump", "air-to-water heat pump", "air source heat pump"], ["install", "replace", "repair"], ""),
    "walls": ("painting", ["walls", "interior walls", "the wall surfaces"], ["paint", "insulate"], "in"),
    "facade": ("painting", ["facade", "outside walls", "exterior cladding"], ["paint", "insulate", "repair"], ""),
    "stairs": ("masonry", ["outdoor stairs", "brick steps", "exterior staircase"], ["build", "remove", "repair"], "out"),
    "chimney": ("masonry", ["chimney", "chimney stack", "flue"], ["repair", "remove"], ""),
}
JOB_ACTIONS: dict[str, list[str]] = {
    "install": ["Install", "Fit", "Put in", "Mount", "Installation of"],
    "replace": ["Replace", "Swap out", "Change", "Replacement of", "Renew"],
    "remove": ["Remove", "Tear out", "Take out", "Demolish", "Removal of"],
    "repair": ["Repair", "Fix", "Mend", "Repairs to", "Patch up"],
    "build": ["Build", "Construct", "Make", "Cast", "Building of"],
    "paint": ["Paint", "Repaint", "Give a new coat of paint to", "Painting of", "Stain"],
    "sand": ["Sand", "Sand and varnish", "Grind and lacquer", "Sanding of", "Refinish"],
    "insulate": ["Insulate", "Add insulation to", "Re-insulate", "Insulation of", "Lag"],
}
JOB_PLACES = {
    "": ["", "", "", "", " at our holiday cabin", " in a detached house", " in an old farmhouse", " before winter",
         " asap"],
    "in": [" in the bathroom", " in the basement", " in the attic", " in the hallway", " upstairs"],
    "out": [" in the garden", " behind the house", " at the front of the house"],
}
Job = tuple[str, str]  # (object, action)


def _job_text(job: Job, rng: random.Random) -> str:
    obj, action = job
    name = rng.choice(JOB_OBJECTS[obj][1])
    text = f"{rng.choice(JOB_ACTIONS[action])} {name}" if rng.random() < 0.85 else name.capitalize()
    where = JOB_OBJECTS[obj][3]
    return text + rng.choice(JOB_PLACES[""] + (JOB_PLACES[where] if where else []))


def _job_score(a: Job, b: Job) -> float:
    """How alike two jobs are: same job 0.95, same object 0.55, same trade 0.35, same action 0.15, else 0.05."""
    if a == b:
        return 0.95
    if a[0] == b[0]:
        return 0.55
    if JOB_OBJECTS[a[0]][0] == JOB_OBJECTS[b[0]][0]:
        return 0.35
    return 0.15 if a[1] == b[1] else 0.05


def _other_job(job: Job, jobs: list[Job], rng: random.Random) -> Job:
    """A different job; half the time a confusable one (same object or same trade)."""
    close = [j for j in jobs if j != job and _job_score(job, j) >= 0.35]
    return rng.choice(close if close and rng.random() < 0.5 else [j for j in jobs if j != job])


def jobs(n_train: int, n_test: int, rng: random.Random) -> dict[str, list[dict]]:
    """Three training sets (triplets, query pairs, scored pairs) and a test triplet set on held-out jobs."""
    all_jobs = [(obj, act) for obj, (_, _, acts, _) in JOB_OBJECTS.items() for act in acts]
    rng.shuffle(all_jobs)
    held_out = set(all_jobs[: len(all_jobs) // 5])  # test anchors are jobs never trained on
    train_jobs = [j for j in all_jobs if j not in held_out]

    def triplet(anchor: Job, negatives: list[Job]) -> dict:
        return {"sentence_0": _job_text(anchor, rng), "sentence_1": _job_text(anchor, rng),
                "sentence_2": _job_text(_other_job(anchor, negatives, rng), rng)}

    scored = []
    for _ in range(n_train):
        a = rng.choice(train_jobs)
        b = a if rng.random() < 0.3 else _other_job(a, train_jobs, rng)
        scored.append({"sentence_0": _job_text(a, rng), "sentence_1": _job_text(b, rng), "label": _job_score(a, b)})
    return {
        "jobs_triplets_train.jsonl": [triplet(rng.choice(train_jobs), train_jobs) for _ in range(n_train)],
        "jobs_pairs_train.jsonl": [
            {"sentence_0": _job_text(j, rng), "sentence_1": "query: " + _job_text(j, rng).lower()}
            for j in (rng.choice(train_jobs) for _ in range(n_train))
        ],
        "jobs_scored_train.jsonl": scored,
        "jobs_triplets_test.jsonl": [triplet(rng.choice(sorted(held_out)), all_jobs) for _ in range(n_test)],
    }


# --- 003: study-programme web pages as records ------------------------------------------------------------

PROGRAMMES = [
    "Supply Chain Management", "Finance and Strategic Management", "Marine Biology", "Data Science",
    "Diversity and Change Management", "Urban Planning", "International Business", "Public Health",
    "Renewable Energy Systems", "Applied Economics", "Digital Marketing", "Environmental Law",
    "Software Engineering", "Accounting and Auditing", "Cognitive Science", "Food Technology",
    "Human Resource Management", "Sustainable Architecture", "Political Communication", "Biomedicine",
]
# section -> (title variants, text templates); {p} is the programme, other slots are per programme
SECTIONS: dict[str, tuple[list[str], list[str]]] = {
    "english": (["1. English language requirement", "English requirements"], [
        "The {p} programme requires English at level {eng}. Only the tests listed on the English page are "
        "accepted as alternatives.", "Applicants to {p} must document English at level {eng} or an "
        "accepted test score before the deadline."]),
    "deadlines": (["Admission process and deadlines", "Application deadline"], [
        "Applications for {p} open on 1 February and close on {deadline}. Late applications are not "
        "considered.", "Apply for {p} by {deadline}; you will receive an answer by the end of July."]),
    "qualifying": (["Qualifying bachelor degrees", "Qualifying bachelor degrees (part 2)"], [
        "Bachelor degrees in {field} qualify you directly for {p}. Please specify the exact name of your "
        "programme when applying.", "A bachelor in {field} meets the academic requirements of {p} in full."]),
    "supplement": (["Potentially qualifying degrees (can supplement to qualify)", "Supplementary courses"], [
        "If your courses do not fully cover the requirements of {p}, you can take supplementary courses in "
        "{topic} before you start.", "Missing {topic}? {p} accepts supplementary courses taken at "
        "bachelor level, as long as they are research-based."]),
    "assessment": (["Advance assessments", "Self-assessment form"], [
        "For {p} we assess your obligatory courses in advance. Electives in {topic} are assessed in "
        "addition.", "Use the self-assessment form to show which of your courses cover {topic} for {p}."]),
    "structure": (["Programme structure", "Courses and electives"], [
        "{p} takes {years} years, with courses in {topic}, electives and a final thesis.",
        "The first year of {p} covers {topic}; in the second you choose electives and write your thesis."]),
    "careers": (["Career opportunities", "After graduation"], [
        "Graduates of {p} work as {job}, in consultancies and in the public sector.",
        "Many graduates of {p} find jobs as {job}; others continue with a PhD."]),
    "fees": (["Tuition fees", "Fees and scholarships"], [
        "Students from outside the EU pay {fee} euros per year for {p}; a few scholarships are available.",
        "Tuition for {p} is free for EU citizens and {fee} euros a year for others."]),
}
_FIELDS = ["economics", "biology", "computer science", "business administration", "law", "engineering",
           "psychology", "chemistry", "mathematics", "political science"]
_TOPICS = ["statistics", "research methods", "ethics", "project management", "quantitative analysis",
           "qualitative methods", "policy analysis", "programming", "organisation theory", "sustainability"]
_JOBS = ["analysts", "consultants", "project managers", "researchers", "planners", "specialists", "advisers"]


def _slug(text: str) -> str:
    return "-".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def school_pages(n: int, rng: random.Random) -> list[dict]:
    """(section record, section record, label): 1.0 for two sections of one page, 0.0 across pages."""
    facts = {p: {"p": p, "eng": rng.choice(["A", "B", "C1", "B2"]), "deadline": rng.choice(["1 March", "15 March",
             "1 April", "15 January"]), "field": rng.choice(_FIELDS), "topic": " and ".join(rng.sample(_TOPICS, 2)),
             "years": rng.choice(["one", "two"]), "job": rng.choice(_JOBS), "fee": rng.choice([7600, 9400, 12000, 15500])}
             for p in PROGRAMMES}  # fmt: skip

    def record(page: str, section: str) -> dict:
        title = rng.choice(SECTIONS[section][0])
        return {"page_name": page, "section_title": title, "section_type": title,
                "text": rng.choice(SECTIONS[section][1]).format(**facts[page]),
                "url": f"https://study.example.org/en/graduate/{_slug(page)}/{_slug(section)}"}

    rows, seen = [], set()
    while len(rows) < n:
        page = rng.choice(PROGRAMMES)
        first, second = rng.sample(list(SECTIONS), 2)
        same = rng.random() < 0.85  # the seed's pairs are mostly same-page (mean label 0.98)
        other = page if same else rng.choice([p for p in PROGRAMMES if p != page])
        row = {"sentence_0": record(page, first), "sentence_1": record(other, second), "label": 1.0 if same else 0.0}
        key = (row["sentence_0"]["text"], row["sentence_0"]["section_title"], row["sentence_1"]["text"],
               row["sentence_1"]["section_title"])
        if key not in seen:
            seen.add(key)
            rows.append(row)
    return rows


# --- 004: course-catalogue questions with right and wrong answers -----------------------------------------

_COURSE_WORDS = (["Managing", "Digital", "Sustainable", "Applied", "International", "Behavioural", "Strategic",
                  "Corporate", "Global", "Advanced", "Responsible", "Quantitative"],
                 ["Innovation", "Supply Chains", "Leadership", "Finance", "Marketing", "Accounting", "Data Analytics",
                  "Business Law", "Organisational Change", "Entrepreneurship", "Econometrics", "Negotiation"])
COURSE_QUESTIONS: dict[str, tuple[str, Callable[[dict], str]]] = {
    "level": ("What level is the course {c}?", lambda c: f"{c['name']} is a {c['level']} level course."),
    "language": ("What language is {c} taught in?", lambda c: f"{c['name']} is taught in {c['language']}."),
    "ects": ("How many ECTS points is {c} worth?", lambda c: f"{c['name']} is worth {c['ects']} ECTS points."),
    "exam": ("How is {c} examined?", lambda c: f"The exam in {c['name']} is {c['exam']}."),
    "description": ("What is the description of {c}?", lambda c: f"{c['name']}: {c['description']}"),
}
_DESCRIPTIONS = [
    "The course introduces {t} through cases from real companies and ends with a group project.",
    "Students learn the main theories of {t} and apply them to current business problems.",
    "This elective looks at {t} from a critical perspective, with guest lectures from practitioners.",
    "A hands-on course in {t}: weekly exercises, a midterm assignment and a final report.",
]


def _courses(n: int, rng: random.Random) -> list[dict]:
    courses, seen = [], set()
    while len(courses) < n:
        title = f"{rng.choice(_COURSE_WORDS[0])} {rng.choice(_COURSE_WORDS[1])}"
        code = (f"{rng.choice(['2024/2025', '2025/2026'])}{rng.choice(['KAN', 'BA', 'DIP'])}-"
                f"C{''.join(rng.choice('ABCDEFGHIKLMOSV') for _ in range(4))}{rng.randint(1000, 2599)}U")
        if title in seen:
            title = f"{title} {rng.choice(['I', 'II', 'in Practice', 'for Managers'])}"
        if title in seen:
            continue
        seen.add(title)
        courses.append({
            "name": f"{code}  {title}", "level": rng.choice(["Full Degree Master", "Bachelor", "Graduate Diploma"]),
            "language": rng.choice(["English", "English", "Danish"]), "ects": rng.choice([2.5, 5, 7.5, 15]),
            "exam": rng.choice(["a written sit-in exam", "an oral exam based on a project",
                                "a 72-hour home assignment", "a portfolio of assignments"]),
            "description": rng.choice(_DESCRIPTIONS).format(t=title.lower()),
        })
    return courses


def course_qa(n: int, rng: random.Random) -> list[dict]:
    """(question, answer, label): about 64% right answers (1.0), else another course's or question's answer."""
    courses = _courses(max(40, n // 3), rng)
    rows, seen = [], set()
    while len(rows) < n:
        course, kind = rng.choice(courses), rng.choice(list(COURSE_QUESTIONS))
        question = COURSE_QUESTIONS[kind][0].format(c=course["name"])
        label, answer_course, answer_kind = 1.0, course, kind
        if rng.random() > 0.64:
            label = 0.0
            if rng.random() < 0.5:
                answer_course = rng.choice([c for c in courses if c is not course])
            else:
                answer_kind = rng.choice([k for k in COURSE_QUESTIONS if k != kind])
        answer = COURSE_QUESTIONS[answer_kind][1](answer_course)
        if (question, answer) not in seen:
            seen.add((question, answer))
            rows.append({"sentence_0": question, "sentence_1": answer, "label": label})
    return rows


# --- all files --------------------------------------------------------------------------------------------


def seed_files(seed: int = 0) -> dict[str, list[dict]]:
    """Every seed-shaped file as file name -> rows (deterministic in ``seed``)."""
    files = {
        "speeches_train.jsonl": speeches(640, random.Random(f"{seed}-speeches-train")),
        "speeches_dev.jsonl": speeches(160, random.Random(f"{seed}-speeches-dev")),
        "farming_qa_train.jsonl": farming_qa(1500, random.Random(f"{seed}-farming")),
        **jobs(600, 300, random.Random(f"{seed}-jobs")),
        "school_pages_train.jsonl": school_pages(600, random.Random(f"{seed}-school")),
        "course_qa_train.jsonl": course_qa(1200, random.Random(f"{seed}-courses")),
    }
    assert set(files) == set(FILES), "FILES must list every generated file"
    return files
