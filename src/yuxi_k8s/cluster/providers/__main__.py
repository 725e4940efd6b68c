"""Print the name of the provider ``choose()`` picks here (nothing is created): local, kind or existing."""

from __future__ import annotations

import sys

from yuxi_k8s.cluster.providers import ProviderError, choose


def main() -> int:
    try:
        print(choose().name)
    except ProviderError as exc:
        print(f"none: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
