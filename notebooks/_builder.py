"""Shared tail of the notebook builders: a list of ``(kind, source)`` cells -> an .ipynb file
with stable cell ids (so rebuilding an unchanged notebook gives an unchanged file)."""

from __future__ import annotations

import os

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))


def build(cells: list[tuple[str, str]], id_prefix: str) -> nbformat.NotebookNode:
    """``cells``: ``("markdown" | "code", source)`` pairs in order; ids ``<id_prefix>-00``..."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "display_name": "Python 3",
        "language": "python",
        "name": "python3",
    }
    for i, (kind, source) in enumerate(cells):
        if kind not in ("markdown", "code"):
            raise ValueError(f"cell {i} kind {kind!r}; allowed: 'markdown', 'code'")
        new = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        cell = new(source)
        cell["id"] = f"{id_prefix}-{i:02d}"
        nb.cells.append(cell)
    return nb


def write(cells: list[tuple[str, str]], filename: str, id_prefix: str) -> str:
    """Builds the notebook and writes it next to this file; returns the path."""
    path = os.path.join(HERE, filename)
    nbformat.write(build(cells, id_prefix), path)
    print(f"wrote {path}")
    return path
