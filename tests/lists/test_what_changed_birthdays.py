"""What changed: a birthday in [C, T) ("turned 82"), on dates picked by hand for the calendar's edges.

Found at county scale: 1.9M residents include people born on 29 February, and the second week of the
benchmark (T in 2026, a common year) failed in publish on ``pl.date(2026, 2, 29)``. Age in
``features.build`` counts a 29 February birthday as reached on 1 March in a common year, so the event
must fall on that day too; and a window that straddles New Year has birthdays in both years.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl

from pipelines.what_changed import change_events
from tests.features.conftest import write_clean


def test_birthdays_on_29_february_and_across_new_year(tmp_path: Path) -> None:
    born = {
        "leap_common_year": date(1944, 2, 29),
        "leap_window_misses": date(1944, 2, 29),
        "leap_leap_year": date(1944, 2, 29),
        "december": date(1940, 12, 30),
        "january": date(1940, 1, 2),
        "outside": date(1950, 6, 15),
    }
    clean = write_clean(
        tmp_path / "clean", residents=[{"person_id": p, "date_of_birth": d} for p, d in born.items()]
    )
    windows = {
        "leap_common_year": (date(2026, 2, 26), date(2026, 3, 5)),  # 1 Mar 2026 is inside
        "leap_window_misses": (date(2026, 2, 20), date(2026, 3, 1)),  # ends on 1 Mar: not yet history
        "leap_leap_year": (date(2028, 2, 24), date(2028, 3, 2)),  # 2028 is a leap year: 29 Feb itself
        "december": (date(2026, 12, 28), date(2027, 1, 4)),  # straddles New Year: 30 Dec 2026
        "january": (date(2026, 12, 28), date(2027, 1, 4)),  # straddles New Year: 2 Jan 2027
        "outside": (date(2026, 12, 28), date(2027, 1, 4)),
    }
    people = pl.DataFrame(
        {"person_id": list(windows), "start": [w[0] for w in windows.values()], "end": [w[1] for w in windows.values()]}
    )
    events = change_events(clean, people).filter(pl.col("kind") == "birthday")
    assert sorted(events.select("person_id", "date", "detail").rows()) == [
        ("december", date(2026, 12, 30), "turned 86"),
        ("january", date(2027, 1, 2), "turned 87"),
        ("leap_common_year", date(2026, 3, 1), "turned 82"),
        ("leap_leap_year", date(2028, 2, 29), "turned 84"),
    ]
