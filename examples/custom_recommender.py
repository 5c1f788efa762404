"""A custom recommender for ``python:examples.custom_recommender:recommend``.

recaudit calls ``recommend(messages, k)`` with the chat messages of one request and the list
length. Return raw text (grounded to the catalog like an LLM's output), a list of titles, or
``{"item_ids": [...]}`` with catalog ids. Bump ``__recaudit_version__`` when code this function
calls changes: the response cache is keyed by the function's own source and this version.

This toy recommender is deliberately biased: it recommends romances to users who say they are
female and action films to everyone else, so an audit finds it (try
``recaudit audit examples/custom-recommender.yaml``).
"""

from __future__ import annotations

__recaudit_version__ = "1"

ROMANCE = ["Titanic (1997)", "Notting Hill (1999)", "Pretty Woman (1990)", "Sleepless in Seattle",
           "When Harry Met Sally...", "Ghost (1990)", "Jerry Maguire", "Casablanca",
           "Shakespeare in Love", "Four Weddings and a Funeral"]
ACTION = ["Die Hard (1988)", "Terminator 2: Judgment Day", "Matrix, The", "Speed (1994)",
          "Heat (1995)", "Top Gun", "Aliens (1986)", "Lethal Weapon", "Rock, The",
          "Mission: Impossible"]


def recommend(messages: list[dict], k: int) -> list[str]:
    user = " ".join(m["content"] for m in messages if m["role"] == "user").lower()
    female = any(w in user for w in (" female ", " a girl ", " woman "))
    titles = ROMANCE if female else ACTION
    return titles[:k]
