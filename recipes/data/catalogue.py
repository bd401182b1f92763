"""The demo's training data: a made-up product catalogue with shopper queries, generated, never downloaded.

Every product is a made-up brand and model with a category and four attributes (colour, size, material,
feature). A query describes what a shopper wants in other words (``"a roomy navy rucksack that keeps the
rain out"``); its positive is the catalogue entry (``"Korava T4 backpack. Large blue canvas, waterproof."``)
and its hard negative a product of the same category that differs in some attributes. Scored pairs
(``sts_*``) rate how many attributes two descriptions share, from 0 to 1.

Products are split between train, dev and test, so the test queries are about products never seen in
training: a model can only improve on them by learning the attribute vocabulary (crimson = red, roomy =
large, keeps the rain out = waterproof), which is what fine-tuning on a catalogue teaches.

Files (JSON lines): ``pairs_{train,dev,test}.jsonl`` with ``anchor, positive, negative`` and
``sts_{train,dev,test}.jsonl`` with ``sentence1, sentence2, score``; ``generate.py`` writes them next to
itself, where the recipes (``path: data/pairs_train.jsonl``) find them.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# category -> (catalogue noun, words shoppers use)
CATEGORIES: dict[str, list[str]] = {
    "tent": ["tent", "camping shelter", "tent for camping"],
    "backpack": ["backpack", "rucksack", "daypack"],
    "headphones": ["headphones", "headset", "earphones"],
    "coffee maker": ["coffee maker", "espresso machine", "coffee brewer"],
    "bicycle": ["bicycle", "bike", "cycle"],
    "jacket": ["jacket", "coat", "outdoor shell"],
    "desk lamp": ["desk lamp", "reading light", "table lamp"],
    "kettle": ["kettle", "water boiler", "tea kettle"],
    "running shoes": ["running shoes", "trainers", "sneakers for jogging"],
    "blender": ["blender", "smoothie maker", "food mixer"],
    "office chair": ["office chair", "desk chair", "work chair"],
    "sleeping bag": ["sleeping bag", "sleep sack", "camping bag to sleep in"],
}
# canonical attribute (catalogue word) -> how shoppers say it
COLOURS: dict[str, list[str]] = {
    "red": ["crimson", "scarlet", "cherry-coloured"],
    "blue": ["navy", "azure", "cobalt"],
    "green": ["olive", "emerald", "forest-green"],
    "black": ["jet-black", "charcoal", "ebony"],
    "white": ["ivory", "snow-white", "cream"],
    "yellow": ["mustard", "lemon", "golden"],
    "grey": ["slate", "silver", "ash-coloured"],
    "orange": ["tangerine", "amber", "rust-coloured"],
}
SIZES: dict[str, list[str]] = {
    "small": ["compact", "tiny", "pocket-sized"],
    "medium": ["mid-sized", "regular-sized", "standard-sized"],
    "large": ["roomy", "oversized", "big"],
}
MATERIALS: dict[str, list[str]] = {
    "steel": ["stainless metal", "steel-bodied", "metal"],
    "bamboo": ["wooden", "bamboo-fibre", "natural wood"],
    "leather": ["hide", "genuine leather", "leather-trimmed"],
    "recycled plastic": ["eco plastic", "made from recycled bottles", "upcycled plastic"],
    "aluminium": ["alloy", "light metal", "aluminum"],
    "canvas": ["cotton canvas", "heavy fabric", "woven cotton"],
}
FEATURES: dict[str, list[str]] = {
    "waterproof": ["keeps the rain out", "water-resistant", "rain-proof"],
    "foldable": ["folds flat", "collapsible", "packs away small"],
    "wireless": ["cordless", "without cables", "no wires needed"],
    "quiet": ["silent", "low-noise", "whisper-quiet"],
    "lightweight": ["easy to carry", "featherweight", "light to carry"],
    "rechargeable": ["charges over USB", "battery powered", "has a rechargeable battery"],
    "child-safe": ["safe for kids", "good for children", "family-friendly"],
    "heavy-duty": ["rugged", "built to last", "tough"],
}
QUERY_TEMPLATES = [
    "looking for a {size} {colour} {noun}, {feature}",
    "I need a {feature} {noun}, {colour}, {material}, {size}",
    "{size} {material} {noun} in {colour}, {feature}",
    "which {noun} is {colour} and {material} and {feature}?",
    "recommend a {colour} {noun}: {size}, {material}, {feature}",
    "want to buy a {noun} - {feature}, {size} and {colour}, {material}",
]
DOC_TEMPLATES = [
    "{brand} {model} {noun}. {size} {colour} {material}, {feature}.",
    "{brand} {model}: a {feature} {noun} in {colour} {material}, size {size}.",
    "The {brand} {model} is a {size} {noun} made of {material}; colour {colour}; {feature}.",
]
_SYLLABLES = "ka ro va ti me lo su ne da fi zo ry ba ke mu sa lin tor vek nor qua pel dro mi".split()


@dataclass(frozen=True)
class Product:
    brand: str
    model: str
    category: str
    colour: str
    size: str
    material: str
    feature: str

    @property
    def attributes(self) -> tuple[str, str, str, str]:
        return (self.colour, self.size, self.material, self.feature)


def _brand(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def make_products(n: int, seed: int = 0) -> list[Product]:
    """``n`` distinct made-up products (distinct brand+model and distinct attribute combinations)."""
    rng = random.Random(seed)
    seen_names: set[str] = set()
    seen_combos: set[tuple[str, ...]] = set()
    products: list[Product] = []
    while len(products) < n:
        category = rng.choice(list(CATEGORIES))
        combo = (
            category,
            rng.choice(list(COLOURS)),
            rng.choice(list(SIZES)),
            rng.choice(list(MATERIALS)),
            rng.choice(list(FEATURES)),
        )
        brand, model = _brand(rng), f"{rng.choice('ABCDKMTVXZ')}{rng.randint(1, 99)}"
        if combo in seen_combos or f"{brand} {model}" in seen_names:
            continue
        seen_combos.add(combo)
        seen_names.add(f"{brand} {model}")
        products.append(Product(brand, model, *combo))
    return products


def describe(product: Product, rng: random.Random) -> str:
    """The catalogue entry: brand, model and the canonical attribute words."""
    template = rng.choice(DOC_TEMPLATES)
    return template.format(
        brand=product.brand,
        model=product.model,
        noun=CATEGORIES[product.category][0],
        size=product.size,
        colour=product.colour,
        material=product.material,
        feature=product.feature,
    )


def ask(product: Product, rng: random.Random) -> str:
    """A shopper's query for ``product`` with synonyms for the category and every attribute."""
    text = rng.choice(QUERY_TEMPLATES).format(
        noun=rng.choice(CATEGORIES[product.category][1:]),
        size=rng.choice(SIZES[product.size]),
        colour=rng.choice(COLOURS[product.colour]),
        material=rng.choice(MATERIALS[product.material]),
        feature=rng.choice(FEATURES[product.feature]),
    )
    text = re.sub(r"\ba ([aeiou])", r"an \1", text)
    return text[0].upper() + text[1:]


def _overlap(a: Product, b: Product) -> float:
    """Similarity score in [0, 1]: 0 for different categories, else 0.2 + 0.2 per shared attribute."""
    if a.category != b.category:
        return 0.0
    return round(0.2 + 0.2 * sum(x == y for x, y in zip(a.attributes, b.attributes, strict=True)), 2)


def _hard_negative(p: Product, pool: list[Product], rng: random.Random) -> Product:
    same = [q for q in pool if q.category == p.category and q != p]
    if not same:
        return rng.choice([q for q in pool if q != p])
    best = max(_overlap(p, q) for q in same)  # the most confusable products of the same category
    return rng.choice([q for q in same if _overlap(p, q) == best])


def _pairs(products: list[Product], pool: list[Product], per_product: int, rng: random.Random) -> list[dict]:
    rows = []
    for p in products:
        for _ in range(per_product):
            rows.append(
                {"anchor": ask(p, rng), "positive": describe(p, rng), "negative": describe(_hard_negative(p, pool, rng), rng)}
            )
    rng.shuffle(rows)
    return rows


def _scored(products: list[Product], n: int, rng: random.Random) -> list[dict]:
    rows = []
    for _ in range(n):
        a = rng.choice(products)
        same = [q for q in products if q.category == a.category]
        b = rng.choice(same) if rng.random() < 0.8 else rng.choice(products)  # mostly same-category pairs
        rows.append({"sentence1": ask(a, rng), "sentence2": describe(b, rng), "score": _overlap(a, b) if a != b else 1.0})
    return rows


def catalogue_files(n_products: int = 520, seed: int = 0) -> dict[str, list[dict]]:
    """The dataset as file name -> rows (deterministic in ``seed``).

    Split by product: 60% train (2 queries each), 20% dev, 20% test (1 query each).
    """
    rng = random.Random(seed)
    products = make_products(n_products, seed)
    n_train, n_dev = int(0.6 * n_products), int(0.2 * n_products)
    splits = {
        "train": products[:n_train],
        "dev": products[n_train : n_train + n_dev],
        "test": products[n_train + n_dev :],
    }
    files: dict[str, list[dict]] = {}
    for split, items in splits.items():
        files[f"pairs_{split}.jsonl"] = _pairs(items, items, 2 if split == "train" else 1, rng)
        files[f"sts_{split}.jsonl"] = _scored(items, 3 * len(items) if split == "train" else len(items), rng)
    return files
