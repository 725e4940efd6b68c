"""What migrate-config would change: rows to insert, to update, and rows only the database has."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..state import jsonio
from .rows import KIND_LABELS, TABLES, Rows, key_label


@dataclass
class KindPlan:
    insert: dict[Any, dict[str, Any]] = field(default_factory=dict)
    update: dict[Any, dict[str, Any]] = field(default_factory=dict)
    changed_columns: dict[Any, list[str]] = field(default_factory=dict)
    unchanged: int = 0
    only_in_db: list[Any] = field(default_factory=list)


@dataclass
class Plan:
    kinds: dict[str, KindPlan]

    @property
    def empty(self) -> bool:
        return not any(p.insert or p.update for p in self.kinds.values())

    @property
    def differences(self) -> int:
        return sum(len(p.insert) + len(p.update) + len(p.only_in_db) for p in self.kinds.values())

    def summary(self) -> list[str]:
        lines = []
        for kind, p in self.kinds.items():
            extra = f", {len(p.only_in_db)} only in the database (kept)" if p.only_in_db else ""
            lines.append(
                f"  {KIND_LABELS[kind]:22} {len(p.insert):>7} new, {len(p.update):>6} changed, "
                f"{p.unchanged:>7} unchanged{extra}"
            )
        return lines

    def details(self, limit: int = 40, new_sign: str = "+", gone_sign: str = "-") -> list[str]:
        lines: list[str] = []
        for kind, p in self.kinds.items():
            entries = [f"{new_sign} {key_label(kind, k)}" for k in p.insert]
            entries += [f"~ {key_label(kind, k)} ({', '.join(p.changed_columns[k])})" for k in p.update]
            entries += [f"{gone_sign} {key_label(kind, k)}" for k in p.only_in_db]
            lines += entries
        if len(lines) > limit:
            lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
        return lines


def canonical(value: Any) -> bytes:
    return jsonio.canonical(value)


def same_row(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal as JSON: ``==`` alone would take true for 1 and miss a changed type."""
    return a == b and canonical(a) == canonical(b)


def make_plan(wanted: Rows, current: Rows) -> Plan:
    kinds: dict[str, KindPlan] = {}
    for kind in TABLES:
        p = KindPlan()
        have = current.get(kind, {})
        for key, row in wanted.get(kind, {}).items():
            old = have.get(key)
            if old is None:
                p.insert[key] = row
            elif not same_row(old, row):
                p.update[key] = row
                p.changed_columns[key] = [c for c in row if canonical(old.get(c)) != canonical(row[c])]
            else:
                p.unchanged += 1
        p.only_in_db = [k for k in have if k not in wanted.get(kind, {})]
        kinds[kind] = p
    return Plan(kinds)
