"""Deterministic news-style sentences for the offline query: no download, same texts each run.

Each sentence fills one of a few templates with people, organisations, places and dates, so
the model has varied entities to find.
"""

from __future__ import annotations

import random

__all__ = ["documents"]

_PEOPLE = (
    "Tim Cook", "Satya Nadella", "Angela Merkel", "Serena Williams", "Elon Musk",
    "Christine Lagarde", "Jacinda Ardern", "Sundar Pichai", "Mary Barra", "Lionel Messi",
    "Taylor Swift", "Warren Buffett", "Emmanuel Macron", "Naomi Osaka", "Jensen Huang",
    "Sarah Johnson", "David Miller", "Maria Garcia", "James Smith", "Priya Patel",
)  # fmt: skip
_ORGANISATIONS = (
    "Apple", "Microsoft", "Google", "Amazon", "Toyota", "Siemens", "Nestle", "Unilever",
    "the European Central Bank", "the World Health Organization", "NASA", "Goldman Sachs",
    "Samsung", "Volkswagen", "the United Nations", "Reuters", "Pfizer", "IBM", "Intel", "Nvidia",
)  # fmt: skip
_PLACES = (
    "London", "Paris", "Berlin", "Tokyo", "New York", "San Francisco", "Sydney", "Toronto",
    "Madrid", "Rome", "Mumbai", "Singapore", "Nairobi", "Chicago", "Seoul", "Dublin",
    "Amsterdam", "Geneva", "Boston", "Mexico City",
)  # fmt: skip
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "last week", "yesterday")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
_TEMPLATES = (
    "{org} is opening a new office in {place} next year, {person} said on {day}.",
    "{person} joined {org} as chief financial officer in {month} {year}.",
    "Shares of {org} rose {percent} percent in {place} after the results on {day}.",
    "{person} met {other} in {place} to discuss a partnership with {org}.",
    "{org} will invest ${amount} million in a factory near {place}, according to {person}.",
    "In {month}, {person} told reporters in {place} that {org} expects strong demand.",
    "The conference in {place} on {day} was opened by {person} of {org}.",
    "{org} and {other_org} signed an agreement in {place} on {month} {date}, {year}.",
)


def documents(count: int, *, seed: int = 8) -> list[str]:
    """``count`` sentences, the same ones for the same ``count`` and ``seed``.

    Examples
    --------
    >>> documents(2) == documents(2)
    True
    >>> len(documents(1000)), len(set(documents(1000))) > 900
    (1000, True)
    """
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        person, other = rng.sample(_PEOPLE, 2)
        org, other_org = rng.sample(_ORGANISATIONS, 2)
        template = rng.choice(_TEMPLATES)
        text = template.format(
            person=person,
            other=other,
            org=org,
            other_org=other_org,
            place=rng.choice(_PLACES),
            day=rng.choice(_DAYS),
            month=rng.choice(_MONTHS),
            year=rng.randint(2015, 2025),
            date=rng.randint(1, 28),
            percent=rng.randint(2, 19),
            amount=rng.randrange(50, 950, 10),
        )
        texts.append(text[0].upper() + text[1:])
    return texts
