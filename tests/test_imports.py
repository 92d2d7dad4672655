"""The import rules (STYLE.md): no cycles, arrows pointing down the layers, nothing importing the
package root, and light imports: `import qualaudit` and the torch-free parts load no torch."""

from __future__ import annotations

import subprocess
import sys

import grimp
import pytest

PACKAGE = "qualaudit"
# Uses the core; the core never imports them (and they never import each other).
ON_TOP = ("qualaudit.cli", "qualaudit.training", "qualaudit.report", "qualaudit.integrations",
          "qualaudit.__main__")
# Never need torch or transformers, so nothing they import may either.
TORCH_FREE = ("qualaudit", "qualaudit.io", "qualaudit.report", "qualaudit.normalize",
              "qualaudit.language", "qualaudit.schema", "qualaudit.heads", "qualaudit.metrics",
              "qualaudit.pipeline")
NEEDS_TORCH = ("qualaudit.model", "qualaudit.head_layers", "qualaudit.scorer",
               "qualaudit.batching", "qualaudit.training")


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(PACKAGE, exclude_type_checking_imports=True)


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, on_stack, stack, found, counter = {}, {}, set(), [], [], [0]

    def visit(m: str) -> None:
        index[m] = low[m] = counter[0]
        counter[0] += 1
        stack.append(m)
        on_stack.add(m)
        for n in graph.find_modules_directly_imported_by(m):
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            component = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                component.append(n)
                if n == m:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return found


def _within(module: str, packages: tuple[str, ...]) -> str | None:
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_the_core_never_imports_what_sits_on_top_of_it(graph):
    upward = []
    for module in graph.modules:
        mine = _within(module, ON_TOP)
        for imported in graph.find_modules_directly_imported_by(module):
            theirs = _within(imported, ON_TOP)
            if theirs is not None and theirs != mine and mine != "qualaudit.cli" \
                    and mine != "qualaudit.__main__":
                upward.append((module, imported))
    assert upward == []


def test_nothing_imports_the_package_root(graph):
    assert graph.find_modules_that_directly_import(PACKAGE) == set()


@pytest.mark.parametrize("module", [m for m in TORCH_FREE if m != PACKAGE])
def test_torch_free_modules_import_nothing_that_needs_torch(graph, module):
    reached = {module} | graph.find_upstream_modules(module)
    assert sorted(m for m in reached if _within(m, NEEDS_TORCH)) == []


@pytest.mark.parametrize("module", TORCH_FREE[:4])
def test_importing_loads_neither_torch_nor_transformers(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_lazy_names_resolve_and_match_all():
    import qualaudit

    for name in qualaudit.__all__:
        assert getattr(qualaudit, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        qualaudit.nope  # noqa: B018


def test_the_ray_adapter_imports_neither_ray_nor_torch_until_used():
    code = ("import sys, qualaudit.integrations.ray; "
            "print(sorted(m for m in ('ray', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
