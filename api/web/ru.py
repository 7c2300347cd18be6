"""Russian wording for the web view: plural agreement, numbers, local times, freshness.

Pure functions (no I/O), unit-tested in tests/api/web/test_units.py.
"""

from __future__ import annotations

from datetime import datetime, tzinfo


def plural(n: int, one: str, few: str, many: str) -> str:
    """The form of a noun that agrees with ``n``: 1 заявление, 2 заявления, 5 заявлений.

    11-14 take the "many" form (11 заявлений); so do numbers ending in 0 and 5-9.
    """
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return one
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return few
    return many


def count(n: int, one: str, few: str, many: str) -> str:
    """``n`` with its agreeing noun: ``count(21, "день", "дня", "дней") == "21 день"``."""
    return f"{num(n)}\u00a0{plural(n, one, few, many)}"


def num(value: float | None, digits: int = 0) -> str:
    """Russian number formatting: thin-space thousands, decimal comma; ``—`` for none."""
    if value is None:
        return "—"
    return f"{value:,.{digits}f}".replace(",", "\u202f").replace(".", ",")


def pct(value: float | None, digits: int = 1) -> str:
    """A share 0..1 as per cent with a decimal comma: ``pct(0.912) == "91,2 %"``."""
    return "—" if value is None else num(100.0 * value, digits) + "\u00a0%"


def points(value: float | None, digits: int = 1) -> str:
    """A difference of two shares in percentage points, signed: ``+3,5 п. п.``."""
    if value is None:
        return "—"
    sign = "+" if value > 0 else ("−" if value < 0 else "")
    return sign + num(abs(100.0 * value), digits) + "\u00a0п.\u00a0п."


MONTHS = (
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
)


MONTHS_NOMINATIVE = (
    "январь",
    "февраль",
    "март",
    "апрель",
    "май",
    "июнь",
    "июль",
    "август",
    "сентябрь",
    "октябрь",
    "ноябрь",
    "декабрь",
)


def month(period: str | None) -> str:
    """``2026-12`` as ``декабрь 2026``; ``—`` for none."""
    if not period:
        return "—"
    year, mon = period.split("-")[:2]
    return f"{MONTHS_NOMINATIVE[int(mon) - 1]} {year}"


def local_time(moment: datetime | None, tz: tzinfo) -> str:
    """``2 декабря 2026, 10:15`` in the region's time zone; ``—`` for none."""
    if moment is None:
        return "—"
    t = moment.astimezone(tz)
    return f"{t.day}\u00a0{MONTHS[t.month - 1]} {t.year}, {t:%H:%M}"


def duration(seconds: float) -> str:
    """A plain-words duration: ``меньше минуты``, ``3 минуты``, ``2 часа 5 минут``, ``4 дня``."""
    s = max(0, int(seconds))
    if s < 60:
        return "меньше минуты"
    minutes = s // 60
    if minutes < 60:
        return count(minutes, "минута", "минуты", "минут")
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        text = count(hours, "час", "часа", "часов")
        return text + (" " + count(minutes, "минута", "минуты", "минут") if minutes else "")
    return count(hours // 24, "день", "дня", "дней")


def freshness(
    watermark: datetime | None, lag: int, ready: bool, now: datetime, tz: tzinfo
) -> tuple[str, str]:
    """(sentence, level) on how fresh the numbers are; level is ``ok``, ``warn`` or ``bad``.

    The watermark is the event time up to which every source's data has arrived; the lag
    is how many processed records the API has not read yet.
    """
    if not ready:
        return "Данные ещё загружаются: цифры могут быть неполными.", "warn"
    if watermark is None:
        return "Данных пока нет: источники ещё ничего не прислали.", "warn"
    behind = (now - watermark).total_seconds()
    when = local_time(watermark, tz)
    words = f"Данные полны по {when} ({duration(behind)} назад)"
    if lag > 0:
        words += f"; ещё не прочитано {count(lag, 'запись', 'записи', 'записей')}"
    else:
        words += "; всё обработанное уже учтено"
    level = "ok" if behind < 900 else ("warn" if behind < 6 * 3600 else "bad")
    return words + ".", level
