"""The files the application's web bundle loads from unpkg.com, served by the kit's web image.

Yuxi-Know's chat answers and editors render code, math and diagrams with md-editor-v3, which
loads highlight.js, KaTeX, Mermaid, Prettier, Cropper.js and screenfull from the constant
``"https://unpkg.com"`` when a page first needs them. In a cluster without internet access, or
behind a Content-Security-Policy that allows only the site, those loads fail and answers lose
their formatting (seen in the browser journey: five failed loads on the first chat answer).

The web image build therefore:

1. reads from the built bundle which files it asks unpkg.com for (:func:`cdn_files`);
2. refuses a package or version the kit does not pin (:func:`unpinned`;
   ``imagefiles/web-cdn-assets.yaml`` holds name, version and the registry's integrity);
3. copies those files, and the fonts their stylesheets name, out of the packages' npm tarballs
   into ``/vendor/npm/<name>@<version>/`` (:func:`install`; the image builder
   checks each tarball against its pinned integrity first);
4. points the bundle's constant at ``/vendor/npm`` (:func:`point_bundle_here`).

Pure functions over files: the download itself belongs to the image builder.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

CDN = "https://unpkg.com"
LOCAL_PREFIX = "/vendor/npm"
PINS_FILE = Path(__file__).resolve().parent / "imagefiles" / "web-cdn-assets.yaml"

# md-editor-v3 keeps the CDN in one minified constant (`M="https://unpkg.com"`) and builds every
# URL as a template literal on it (`${M}/katex@0.16.22/dist/katex.min.css`).
_CONSTANT = re.compile(r'([A-Za-z_$][\w$]*)="' + re.escape(CDN) + '"')
_CSS_URL = re.compile(r"""url\(\s*['"]?([^'")]+?)['"]?\s*\)""")


class AssetError(ValueError):
    """The bundle's CDN files cannot be served from the image; the message is one line."""


@dataclass(frozen=True, order=True)
class Package:
    name: str
    version: str
    integrity: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)


@dataclass(frozen=True, order=True)
class CdnFile:
    name: str  # npm package, e.g. "@highlightjs/cdn-assets"
    version: str
    path: str  # inside the package, e.g. "styles/github.min.css"

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)

    @property
    def url(self) -> str:
        return f"{CDN}/{self.name}@{self.version}/{self.path}"


def load_pins(path: Path = PINS_FILE) -> dict[tuple[str, str], Package]:
    """The pinned packages by (name, version)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    pins: dict[tuple[str, str], Package] = {}
    for entry in data.get("packages") or []:
        package = Package(str(entry["name"]), str(entry["version"]), str(entry["integrity"]))
        if not package.integrity.startswith("sha512-"):
            raise AssetError(f"{path}: {package.name}@{package.version} needs a sha512- integrity")
        pins[package.key] = package
    return pins


def _bundle_scripts(html: Path) -> list[Path]:
    return sorted((html / "assets").glob("*.js"))


def cdn_files(html: Path) -> list[CdnFile]:
    """Every file the bundle under *html* builds a URL for on the unpkg.com constant."""
    found: set[CdnFile] = set()
    for script in _bundle_scripts(html):
        text = script.read_text(encoding="utf-8", errors="replace")
        for constant in set(_CONSTANT.findall(text)):
            template = re.compile(
                r"\$\{" + re.escape(constant) + r"\}/((?:@[\w.-]+/)?[\w.-]+)@([\w.+-]+)/([^`\"'\s]+)"
            )
            found.update(CdnFile(*match) for match in template.findall(text))
    return sorted(found)


def unpinned(files: Iterable[CdnFile], pins: Mapping[tuple[str, str], Package]) -> list[str]:
    """``name@version`` of each package the bundle asks for that *pins* lacks."""
    return sorted({f"{f.name}@{f.version}" for f in files if f.key not in pins})


def _inside(path: str) -> str:
    """*path* normalized inside a package; refuses absolute paths and ones that climb out."""
    clean = posixpath.normpath(path)
    if clean.startswith(("/", "../")) or clean == "..":
        raise AssetError(f"{path!r} points outside its package")
    return clean


def _stylesheet_files(css: str, css_path: str) -> set[str]:
    """The package files a stylesheet names with relative ``url(...)`` (KaTeX's fonts)."""
    wanted: set[str] = set()
    base = posixpath.dirname(css_path)
    for target in _CSS_URL.findall(css):
        target = target.split("#", 1)[0].split("?", 1)[0]
        if not target or target.startswith(("data:", "http:", "https:", "/", "//")):
            continue
        wanted.add(_inside(posixpath.join(base, target)))
    return wanted


def install(html: Path, files: Iterable[CdnFile], tarballs: Mapping[tuple[str, str], Path]) -> int:
    """Copy *files* (and what their stylesheets name) from the packages' tarballs to
    ``html/vendor/npm/<name>@<version>/``; returns how many files were written."""
    by_package: dict[tuple[str, str], set[str]] = {}
    for f in files:
        by_package.setdefault(f.key, set()).add(_inside(f.path))
    written = 0
    for key, wanted in sorted(by_package.items()):
        name, version = key
        target = html / LOCAL_PREFIX.lstrip("/") / f"{name}@{version}"
        with tarfile.open(tarballs[key], "r:gz") as archive:
            members = {
                _inside(m.name.split("/", 1)[1]): m
                for m in archive.getmembers()
                if m.isfile() and "/" in m.name  # npm tarballs hold package/<path>
            }
            queue = sorted(wanted)
            done: set[str] = set()
            while queue:
                path = queue.pop()
                if path in done:
                    continue
                member = members.get(path)
                if member is None:
                    raise AssetError(f"{name}@{version} has no {path} (the web bundle asks unpkg.com for it)")
                extracted = archive.extractfile(member)
                assert extracted is not None  # a regular file
                data = extracted.read()
                out = target / path
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
                done.add(path)
                written += 1
                if path.endswith(".css"):
                    queue.extend(_stylesheet_files(data.decode("utf-8", errors="replace"), path) - done)
    return written


def point_bundle_here(html: Path) -> int:
    """Replace the bundle's unpkg.com constant by the image's own ``/vendor/npm``; returns how many
    scripts changed."""
    changed = 0
    for script in _bundle_scripts(html):
        text = script.read_text(encoding="utf-8")  # strict: a script is written back whole
        new = _CONSTANT.sub(lambda m: f'{m.group(1)}="{LOCAL_PREFIX}"', text)
        if new != text:
            script.write_text(new, encoding="utf-8")
            changed += 1
    return changed


__all__ = [
    "CDN",
    "LOCAL_PREFIX",
    "PINS_FILE",
    "AssetError",
    "CdnFile",
    "Package",
    "cdn_files",
    "install",
    "load_pins",
    "point_bundle_here",
    "unpinned",
]
