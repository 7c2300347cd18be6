"""Generated files: write them, or tell how the committed ones differ from the generator."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path


def write(out_dir: Path, files: Mapping[str, str]) -> list[Path]:
    """Write generated files into ``out_dir``; returns the paths that changed."""
    out_dir.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(path)
    return changed


def stale(out_dir: Path, files: Mapping[str, str], *, exclusive: bool = False) -> list[str]:
    """How the files in ``out_dir`` differ from ``files`` (empty list: up to date).

    Each entry is a short unified diff (or a note for a missing or extra file). With
    ``exclusive``, a file of the same suffix in ``out_dir`` that the generator no longer
    makes is reported too.
    """
    problems = []
    for name, text in files.items():
        path = out_dir / name
        if not path.exists():
            problems.append(f"{path}: missing (not generated yet)")
            continue
        current = path.read_text(encoding="utf-8")
        if current != text:
            diff = difflib.unified_diff(
                current.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=str(path),
                tofile=f"{path} (generated)",
                n=1,
            )
            problems.append("".join(list(diff)[:40]))
    if exclusive and out_dir.is_dir():
        suffixes = {Path(n).suffix for n in files}
        for path in sorted(out_dir.iterdir()):
            if path.suffix in suffixes and path.name not in files:
                problems.append(f"{path}: not made by the generator any more (delete it)")
    return problems
