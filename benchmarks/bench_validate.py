"""Benchmark `make validate` against the raw `kustomize build | kubeconform` pipeline.

Run with `scripts/bench.sh validate` (or `python benchmarks/bench_validate.py`).
Both sides use the same pinned binaries and the same prepared schemas, on the
same overlays, in the same run; schema preparation is cached beforehand (as it
is after the first `make validate`). Figures are medians of several runs.

1. full: `python -m yuxi_k8s.validate overlays/dev overlays/staging overlays/prod`
   (render in parallel, kubeconform -strict, every policy rule, report) vs
   raw: `for o in ...; do kubectl kustomize $o | kubeconform -strict ...; done`.
2. growth: the full validate over 3 overlays vs 30 (ten copies of each
   overlay in a temp dir, next to symlinks of base/ and components/).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from yuxi_k8s.validate import crds, schemas  # noqa: E402
from yuxi_k8s.validate.render import find_tool  # noqa: E402

OVERLAYS = [p for p in ("overlays/dev", "overlays/staging", "overlays/prod") if (ROOT / p).is_dir()]
REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))


def timed(cmd: list[str] | str, *, cwd: Path = ROOT, shell: bool = False) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, shell=shell, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):  # 1 = violations found: still a complete run
        raise SystemExit(f"benchmark command failed ({proc.returncode}): {cmd}\n{proc.stderr[-2000:]}")
    return elapsed


def median(cmd: list[str] | str, repeat: int = REPEAT, **kw: object) -> float:
    return statistics.median(timed(cmd, **kw) for _ in range(repeat))  # type: ignore[arg-type]


def full_cmd(paths: list[str]) -> list[str]:
    return [sys.executable, "-m", "yuxi_k8s.validate", "-q", *paths]


def raw_cmd(paths: list[str]) -> str:
    core = schemas.kubernetes_schema_dir()
    crd = crds.schema_dir()
    kubectl, kubeconform = find_tool("kubectl"), find_tool("kubeconform")
    locations = (
        f"-schema-location '{core}/{schemas.CORE_TEMPLATE}' -schema-location '{crd}/{schemas.CRD_TEMPLATE}'"
    )
    steps = [f"{kubectl} kustomize {p} | {kubeconform} -strict {locations} - >/dev/null" for p in paths]
    return "; ".join(steps)


def copies(tmp: Path, count: int) -> list[str]:
    """count copies of each overlay, each beside symlinks to base/ and components/."""
    paths = []
    for i in range(count):
        home = tmp / f"copy{i}"
        (home / "overlays").mkdir(parents=True)
        for shared in ("base", "components"):
            if (ROOT / shared).exists():
                (home / shared).symlink_to(ROOT / shared)
        for overlay in OVERLAYS:
            target = home / overlay
            shutil.copytree(ROOT / overlay, target, symlinks=True)
            paths.append(str(target))
    return paths


def main() -> None:
    if not OVERLAYS:
        raise SystemExit("no overlays to benchmark")
    schemas.kubernetes_schema_dir()
    crds.schema_dir()
    print(f"overlays: {', '.join(OVERLAYS)}; cores: {os.cpu_count()}; median of {REPEAT} runs")
    os.chdir(ROOT)
    timed(full_cmd(OVERLAYS))  # warm the page cache for both sides
    raw = median(raw_cmd(OVERLAYS), shell=True)
    full = median(full_cmd(OVERLAYS))
    print(f"raw  kubectl kustomize | kubeconform -strict, {len(OVERLAYS)} overlays: {raw:6.2f} s")
    what = f"render+schema+{_rule_count()} rules"
    print(f"full make validate ({what}), {len(OVERLAYS)} overlays: {full:6.2f} s")
    print(f"ratio full/raw: {full / raw:.2f}x (target <= 2x; absolute target < 5 s)")
    make = median(["make", "--no-print-directory", "-s", "validate"])
    print(f"make validate as shipped (prerequisite checks + overlays + gitops entry points): {make:6.2f} s")

    with tempfile.TemporaryDirectory(prefix="bench-validate-") as tmp:
        few = copies(Path(tmp) / "few", 1)
        many = copies(Path(tmp) / "many", 10)
        t_few = median(full_cmd(few), repeat=max(3, REPEAT // 2))
        t_many = median(full_cmd(many), repeat=max(3, REPEAT // 2))
        raw_many = median(raw_cmd(many), repeat=max(3, REPEAT // 2), shell=True)
    print(f"growth: {len(few)} overlays {t_few:6.2f} s ({t_few / len(few):.3f} s each)")
    print(f"growth: {len(many)} overlays {t_many:6.2f} s ({t_many / len(many):.3f} s each)")
    ratio = len(many) / len(few)
    slope = (t_many - t_few) / (len(many) - len(few))
    print(f"growth ratio {len(many)}/{len(few)} overlays: {t_many / t_few:.2f}x for {ratio:.0f}x the work")
    fixed = t_few - slope * len(few)
    print(f"marginal cost per extra overlay: {slope:.3f} s (fixed start-up: {fixed:.2f} s)")
    print(f"raw pipeline, {len(many)} overlays: {raw_many:6.2f} s (full/raw {t_many / raw_many:.2f}x)")


def _rule_count() -> int:
    from yuxi_k8s.validate.rules import all_rules

    return len(all_rules())


if __name__ == "__main__":
    main()
