"""The README and docs/ point at files that exist: every relative link, and every path to
a module, test or doc written in backquotes (a gym id such as `patchenv/Digits-v1` aside)."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "reports" / "README.md"]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PATH = re.compile(r"`((?:patchenv|agents|benchmarks|tests|docs|reports)/[A-Za-z0-9_./-]+)`")
GYM_ID = re.compile(r"^patchenv/[A-Za-z0-9]+-v\d+$")


def broken(doc: Path) -> list[str]:
    text = doc.read_text()
    links = [t for t in LINK.findall(text) if not re.match(r"^[a-z]+:", t) and not (doc.parent / t).exists()]
    paths = [p for p in (m.rstrip(".,") for m in PATH.findall(text))
             if not GYM_ID.match(p) and not any(c in p for c in "*<") and not (ROOT / p).exists()]
    return links + paths


def test_the_front_door_and_the_manual_are_there():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 350
    for name in ("AGENTVIT.md", "architecture.md", "env.md", "agents.md", "benchmarks.md", "gpu.md", "ray.md"):
        assert (ROOT / "docs" / name).is_file(), name


def test_every_link_and_path_in_the_docs_resolves():
    assert {str(d.relative_to(ROOT)): b for d in DOCS if (b := broken(d))} == {}


def test_a_broken_link_or_path_is_found(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("see [this](missing.md) and `patchenv/no_such_module.py`, not `patchenv/Digits-v1`")
    assert broken(doc) == ["missing.md", "patchenv/no_such_module.py"]
