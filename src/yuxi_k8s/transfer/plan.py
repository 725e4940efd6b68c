"""What differs between the settings files and the database: rows to insert, to update, only in one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..state.saves import Snapshot
from ..state.values import canonical

Rows = dict[str, dict[Any, Any]]  # kind ("config" | "provider") -> key -> value
KIND_LABELS = {"config": "config keys", "provider": "model providers"}


def snapshot_rows(snap: Snapshot) -> Rows:
    return {"config": dict(snap.config), "provider": dict(snap.providers)}


def rows_snapshot(rows: Rows, present: set[str] | None = None) -> Snapshot:
    return Snapshot(config=dict(rows["config"]), providers=dict(rows["provider"]), present=set(present or ()))


def key_label(kind: str, key: Any) -> str:
    return f"config {key}" if kind == "config" else f"provider {key[0]}/{key[1]}"


@dataclass
class KindPlan:
    insert: dict[Any, Any] = field(default_factory=dict)
    update: dict[Any, Any] = field(default_factory=dict)
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
                f"  {KIND_LABELS[kind]:16} {len(p.insert):>4} new, {len(p.update):>4} changed, "
                f"{p.unchanged:>4} unchanged{extra}"
            )
        return lines

    def details(self, limit: int = 40, new_sign: str = "+", gone_sign: str = "-") -> list[str]:
        lines: list[str] = []
        for kind, p in self.kinds.items():
            lines += [f"{new_sign} {key_label(kind, k)}" for k in p.insert]
            lines += [f"~ {key_label(kind, k)}" for k in p.update]
            lines += [f"{gone_sign} {key_label(kind, k)}" for k in p.only_in_db]
        if len(lines) > limit:
            lines = [*lines[:limit], f"... and {len(lines) - limit} more"]
        return lines


def same(a: Any, b: Any) -> bool:
    """Equal as JSON: ``==`` alone would take true for 1 and miss a changed type."""
    return bool(a == b) and canonical(a) == canonical(b)


def make_plan(wanted: Rows, current: Rows) -> Plan:
    kinds: dict[str, KindPlan] = {}
    for kind in KIND_LABELS:
        p = KindPlan()
        have = current.get(kind, {})
        for key, value in wanted.get(kind, {}).items():
            if key not in have:
                p.insert[key] = value
            elif not same(have[key], value):
                p.update[key] = value
            else:
                p.unchanged += 1
        p.only_in_db = sorted(k for k in have if k not in wanted.get(kind, {}))
        kinds[kind] = p
    return Plan(kinds)
