import numpy as np
import pandas as pd

from recaudit.probes.histories import display_title, history_ids, select_history, user_sort_key


def test_display_title():
    assert display_title("Matrix, The (1999)") == "The Matrix (1999)"
    assert display_title("Heat") == "Heat"
    assert display_title("Deer Hunter, The", 1978) == "The Deer Hunter (1978)"
    assert display_title("Heat", None) == "Heat"


def test_select_history_orders():
    df = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "rating": [3.0, 5.0, 5.0, 1.0],
                       "timestamp": [4, 1, 3, 2]})
    rng = np.random.default_rng(0)
    # top-rated: rating first, ties by more recent first
    assert select_history(df, 2, "top_rated", rng) == ["c", "b"]
    # most recent two, shown oldest first
    assert select_history(df, 2, "recent", rng) == ["c", "a"]
    sample = select_history(df, 3, "random", rng)
    times = dict(zip(df.item_id, df.timestamp))
    assert len(set(sample)) == 3 and [times[i] for i in sample] == sorted(times[i] for i in sample)
    assert history_ids(None) == [] and history_ids(df.head(0)) == []


def test_user_sort_key_numeric_first():
    assert sorted(["10", "2", "x", "1"], key=user_sort_key) == ["1", "2", "10", "x"]
