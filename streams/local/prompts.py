"""Questions of a few prompt classes, many distinct texts per class from templates and slots: the failure classes
the failure-cluster tests and benchmark plant, and the everyday traffic around them.

Example::

    >>> topic_question("refunds", random.Random(3))
    'How do I get my money back for the blender I ordered a month ago?'
"""

from __future__ import annotations

import random

# Questions of three prompt classes that fail in the failure-cluster tests and benchmark, varied by templates
# and slots (one theme each, as an embedding sees it: see docs/clusters.md).
TOPIC_TEMPLATES = {
    "refunds": (
        [
            "I want a refund for my {item}, it arrived {problem}.",
            "How do I get my money back for the {item} I ordered {when}?",
            "Can you refund order #{n}? The {item} was {problem}.",
            "Please process a refund: I was charged for a {item} I returned {when}.",
            "Why hasn't my refund for the {item} shown up yet? I sent it back {when}.",
            "The {item} is {problem}, I need a full refund to my card.",
        ],
        {
            "item": [
                "jacket",
                "laptop stand",
                "headphones",
                "coffee maker",
                "subscription",
                "phone case",
                "pair of boots",
                "backpack",
                "monitor",
                "blender",
            ],
            "problem": ["broken", "damaged", "the wrong size", "missing parts", "two weeks late", "not as described"],
            "when": ["last week", "yesterday", "a month ago", "on Monday", "ten days ago"],
            "n": [str(i) for i in range(1000, 1100)],
        },
    ),
    "coding": (
        [
            "My Python script raises {error} when I {action}, how do I fix it?",
            "Why do I get {error} in Python when I {action}?",
            "Python throws {error} every time I {action}. What am I doing wrong?",
            "How can I stop getting {error} from my Python code when I {action}?",
            "I keep seeing {error} in my Python program after I {action}, any idea why?",
        ],
        {
            "error": [
                "a KeyError",
                "a TypeError",
                "an IndexError",
                "a ValueError",
                "an AttributeError",
                "a ModuleNotFoundError",
                "a RecursionError",
            ],
            "action": [
                "read a CSV file with pandas",
                "loop over a dictionary",
                "call my function",
                "parse JSON from an API",
                "import my module",
                "append to a list",
                "sort the results",
            ],
        },
    ),
    "medical": (
        [
            "What dose of {drug} should I take for {symptom}?",
            "Is it safe to take {drug} for {symptom} while {condition}?",
            "I have {symptom}, should I take {drug} or see a doctor?",
            "How much {drug} can I give my child for {symptom}?",
            "Can {drug} make my {symptom} worse if I am {condition}?",
        ],
        {
            "drug": ["ibuprofen", "paracetamol", "aspirin", "antibiotics", "melatonin", "antihistamines"],
            "symptom": ["a migraine", "a fever", "back pain", "a sore throat", "chest pain", "insomnia", "a rash"],
            "condition": ["pregnant", "on blood thinners", "diabetic", "breastfeeding", "over 70"],
        },
    ),
}


# Everyday questions of other kinds, the traffic around the classes above.
BACKGROUND_TEMPLATES = {
    "travel": (
        [
            "What should I pack for a {days}-day trip to {place}?",
            "Is {month} a good time to visit {place}?",
            "How do I get from the airport to the centre of {place}?",
            "What are cheap things to do in {place}?",
        ],
        {
            "days": ["3", "5", "7", "10"],
            "place": ["Lisbon", "Kyoto", "Mexico City", "Oslo", "Cape Town", "Hanoi"],
            "month": ["March", "July", "October", "December"],
        },
    ),
    "cooking": (
        [
            "How long should I bake {dish} at {temp} degrees?",
            "Can I replace {ingredient} in {dish}?",
            "What's a quick {meal} recipe with {ingredient}?",
            "Why did my {dish} turn out {texture}?",
        ],
        {
            "dish": ["banana bread", "lasagna", "roast chicken", "sourdough", "brownies"],
            "temp": ["180", "200", "220"],
            "ingredient": ["eggs", "butter", "chickpeas", "spinach", "tofu"],
            "meal": ["breakfast", "lunch", "dinner"],
            "texture": ["dry", "dense", "soggy", "too salty"],
        },
    ),
    "account": (
        [
            "How do I change the {setting} on my account?",
            "Where can I find my {document}?",
            "Can I add {who} to my {plan} plan?",
            "How do I turn off {notification} notifications?",
        ],
        {
            "setting": ["email address", "password", "display name", "time zone"],
            "document": ["invoices", "API keys", "usage report", "contract"],
            "who": ["a colleague", "my manager", "a second admin"],
            "plan": ["team", "business", "starter"],
            "notification": ["email", "push", "weekly summary"],
        },
    ),
    "writing": (
        [
            "Can you make this {doc} sound more {tone}?",
            "Write a short {doc} announcing {news}.",
            "Summarize this {doc} about {news} in three bullet points.",
        ],
        {
            "doc": ["email", "blog post", "press release", "memo"],
            "tone": ["friendly", "formal", "concise"],
            "news": ["our new office", "a product launch", "a price change", "the quarterly results"],
        },
    ),
}


def topic_question(topic: str, rng: random.Random) -> str:
    """A question of one prompt class (``TOPIC_TEMPLATES`` or ``BACKGROUND_TEMPLATES``), from its templates and
    slots: many distinct texts of one theme, for planting failure classes.

    >>> topic_question("refunds", random.Random(3))
    'How do I get my money back for the blender I ordered a month ago?'
    """
    templates, slots = {**TOPIC_TEMPLATES, **BACKGROUND_TEMPLATES}[topic]
    template = rng.choice(templates)
    return template.format(**{k: rng.choice(v) for k, v in sorted(slots.items())})
