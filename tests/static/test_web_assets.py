"""The web image serves the bundle's unpkg.com files itself (yuxi_k8s.app.web_assets).

A small bundle and npm-style tarballs made here stand for md-editor-v3's minified constant and
the registry's packages; the shipped pins are checked for form (the real packages are checked
against them by the image build, and the browser journey proves nothing is loaded from outside).
"""

from __future__ import annotations

import base64
import io
import re
import tarfile
from pathlib import Path

import pytest

from yuxi_k8s.app import web_assets
from yuxi_k8s.app.web_assets import AssetError, CdnFile, Package

BUNDLE = (
    'const x=1,M="https://unpkg.com",hl=`${M}/@hl/assets@1.0.0/highlight.min.js`,'
    "kt={js:`${M}/katex@0.16.22/dist/katex.min.js`,css:`${M}/katex@0.16.22/dist/katex.min.css`};"
    'const other="https://cdn.example.org",o=`${other}/left@1.0.0/alone.js`;'
)
KATEX_CSS = (
    "@font-face{src:url(fonts/KaTeX_Main.woff2) format('woff2'),url('fonts/KaTeX_Main.woff?v=1')}"
    ".k{background:url(data:image/png;base64,AAAA)}"
)


def _bundle(html: Path, text: str = BUNDLE) -> Path:
    (html / "assets").mkdir(parents=True)
    script = html / "assets" / "index-abc.js"
    script.write_text(text)
    return script


def npm_style_tarball(path: Path, files: dict[str, bytes]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return path


def test_the_files_built_on_the_unpkg_constant_are_found_and_nothing_else(tmp_path: Path) -> None:
    _bundle(tmp_path)
    assert web_assets.cdn_files(tmp_path) == [
        CdnFile("@hl/assets", "1.0.0", "highlight.min.js"),
        CdnFile("katex", "0.16.22", "dist/katex.min.css"),
        CdnFile("katex", "0.16.22", "dist/katex.min.js"),
    ]


def test_a_package_the_kit_does_not_pin_is_named() -> None:
    files = [CdnFile("katex", "0.16.22", "dist/katex.min.js"), CdnFile("katex", "0.17.0", "a.js")]
    pins = {("katex", "0.16.22"): Package("katex", "0.16.22", "sha512-x")}
    assert web_assets.unpinned(files, pins) == ["katex@0.17.0"]


def test_files_and_the_fonts_their_stylesheets_name_are_served_and_the_bundle_points_home(
    tmp_path: Path,
) -> None:
    html = tmp_path / "html"
    script = _bundle(html)
    katex = npm_style_tarball(
        tmp_path / "katex.tgz",
        {
            "package/dist/katex.min.js": b"katex()",
            "package/dist/katex.min.css": KATEX_CSS.encode(),
            "package/dist/fonts/KaTeX_Main.woff2": b"w2",
            "package/dist/fonts/KaTeX_Main.woff": b"w1",
            "package/dist/fonts/KaTeX_Unused.ttf": b"not named",
        },
    )
    hl = npm_style_tarball(tmp_path / "hl.tgz", {"package/highlight.min.js": b"hljs"})
    files = web_assets.cdn_files(html)
    written = web_assets.install(html, files, {("katex", "0.16.22"): katex, ("@hl/assets", "1.0.0"): hl})
    served = html / "vendor/npm"
    assert written == 5
    assert (served / "katex@0.16.22/dist/fonts/KaTeX_Main.woff2").read_bytes() == b"w2"
    assert not (served / "katex@0.16.22/dist/fonts/KaTeX_Unused.ttf").exists()
    assert (served / "@hl/assets@1.0.0/highlight.min.js").read_bytes() == b"hljs"

    assert web_assets.point_bundle_here(html) == 1
    text = script.read_text()
    assert 'M="/vendor/npm"' in text and "https://unpkg.com" not in text
    assert 'other="https://cdn.example.org"' in text  # only the unpkg constant is touched
    assert web_assets.cdn_files(html) == []


def test_a_file_missing_from_its_package_is_named(tmp_path: Path) -> None:
    html = tmp_path / "html"
    _bundle(html)
    katex = npm_style_tarball(tmp_path / "katex.tgz", {"package/dist/katex.min.js": b"k"})
    hl = npm_style_tarball(tmp_path / "hl.tgz", {"package/highlight.min.js": b"h"})
    tarballs = {("katex", "0.16.22"): katex, ("@hl/assets", "1.0.0"): hl}
    with pytest.raises(AssetError, match=re.escape("katex@0.16.22 has no dist/katex.min.css")):
        web_assets.install(html, web_assets.cdn_files(html), tarballs)


def test_a_stylesheet_naming_a_file_outside_its_package_is_refused(tmp_path: Path) -> None:
    html = tmp_path / "html"
    _bundle(html, 'M="https://unpkg.com",c=`${M}/katex@0.16.22/dist/katex.min.css`')
    css = b"@font-face{src:url(../../../../etc/passwd)}"
    katex = npm_style_tarball(tmp_path / "katex.tgz", {"package/dist/katex.min.css": css})
    with pytest.raises(AssetError, match="outside its package"):
        web_assets.install(html, web_assets.cdn_files(html), {("katex", "0.16.22"): katex})
    assert not (tmp_path / "etc").exists()


def test_the_shipped_pins_are_sha512_and_one_per_package() -> None:
    pins = web_assets.load_pins()
    assert pins, "imagefiles/web-cdn-assets.yaml pins nothing"
    for package in pins.values():
        digest = base64.b64decode(package.integrity.removeprefix("sha512-"))
        assert len(digest) == 64, package
    assert len({name for name, _ in pins}) == len(pins)


def test_a_pin_without_sha512_is_refused(tmp_path: Path) -> None:
    pins = tmp_path / "pins.yaml"
    pins.write_text("packages:\n  - {name: katex, version: 0.16.22, integrity: sha1-abc}\n")
    with pytest.raises(AssetError, match="needs a sha512- integrity"):
        web_assets.load_pins(pins)
