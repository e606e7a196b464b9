"""The layers of docs/ARCHITECTURE.md, enforced: no module under service/ imports upwards.

Every import statement of every module is read with :mod:`ast` (nothing is imported, so this runs in
milliseconds and sees imports inside functions and ``if TYPE_CHECKING:`` blocks too). A module belongs to the
unit of the longest prefix below that names it; it may import its own unit and any unit of a lower layer.
Units of the same layer are independent of each other. A module no unit names fails the test, so a new
package has to be given its place here and in docs/ARCHITECTURE.md.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "service"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # lowest first
    (
        "foundation",
        (
            "service",
            "service.errors",
            "service.logging",
            "service.memory",
            "service.metrics",
            "service.timing",
        ),
    ),
    ("colour", ("service.colour",)),
    ("model runtime", ("service.inference.engine",)),
    ("media and operators", ("service.video", "service.images", "service.operators")),
    ("settings", ("service.config",)),
    ("inference", ("service.inference",)),
    ("pipeline", ("service.pipeline",)),
    ("scale-out", ("service.scaleout",)),
    ("streams and jobs", ("service.stream", "service.jobs")),
    ("HTTP", ("service.api",)),
    ("demo page", ("service.web",)),
    ("app", ("service.app",)),
    ("server", ("service.server",)),
    ("command line", ("service.cli",)),
)
"""Layer name and its units (module prefixes), lowest first: the table in docs/ARCHITECTURE.md."""

OUTSIDE = ("models", "bench", "tests", "clients")
"""Top-level packages that sit above the whole service: it never imports them."""


def module_name(path: Path) -> str:
    """``service/jobs/store.py`` -> ``service.jobs.store``; a package's ``__init__.py`` -> the package."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(SERVICE.rglob("*.py"))}


def unit_of(module: str) -> tuple[int, str] | None:
    """(layer index, unit prefix) of the longest unit prefix naming ``module``, or None."""
    best: tuple[int, str] | None = None
    for index, (_, units) in enumerate(LAYERS):
        for unit in units:
            named = module == unit or (unit != "service" and module.startswith(unit + "."))
            if named and (best is None or len(unit) > len(best[1])):
                best = (index, unit)
    return best


def imports_of(module: str) -> list[tuple[int, str]]:
    """(line, imported module) for every import in ``module``, relative ones resolved."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                # ``from service import errors`` imports the module service.errors, not the package.
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if sub in MODULES else base))
    return found


def target_module(name: str) -> str | None:
    """The service module an import names (``service.jobs.store.JobStore`` -> ``service.jobs.store``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if unit_of(m) is None] == [], "give new packages a layer (and ARCHITECTURE.md)"


def violations(module: str) -> list[str]:
    """Every import of ``module`` that points up, sideways within a layer, or out of the service."""
    own = unit_of(module)
    assert own is not None
    problems = []
    for line, name in imports_of(module):
        top = name.partition(".")[0]
        if top in OUTSIDE:
            problems.append(f"{module}:{line} imports {name}: the service never imports {top}/")
            continue
        if top != "service":
            continue
        target = target_module(name)
        theirs = unit_of(target) if target else None
        if theirs is None or theirs[1] == own[1]:
            continue
        if theirs[0] >= own[0]:
            kind = "a sibling in its own layer" if theirs[0] == own[0] else "a higher layer"
            problems.append(
                f"{module}:{line} ({LAYERS[own[0]][0]}) imports {target} ({LAYERS[theirs[0]][0]}): {kind}"
            )
    return problems


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    problems = violations(module)
    assert not problems, "\n".join(problems)


def test_the_check_sees_upward_sideways_and_outside_imports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check itself, on a made-up colour module importing up, sideways, out, and (allowed) down."""
    fake = tmp_path / "fake.py"
    fake.write_text(
        "from service.colour import pq\n"
        "from service.api.state import ServiceState\n"
        "def f():\n    from models.mqn import artifacts\n"
    )
    monkeypatch.setitem(MODULES, "service.colour.fake", fake)
    found = violations("service.colour.fake")
    assert len(found) == 2, found
    assert "imports service.api.state (HTTP): a higher layer" in found[0]
    assert "the service never imports models/" in found[1]
    sibling = tmp_path / "sibling.py"
    sibling.write_text("import service.images.png\n")
    monkeypatch.setitem(MODULES, "service.video.sibling", sibling)
    assert "a sibling in its own layer" in violations("service.video.sibling")[0]


def test_only_video_imports_pyav() -> None:
    """PyAV stays behind ``service/video`` (house style): its errors are mapped there, once."""
    found = [
        f"{module}:{line} imports {name}"
        for module in sorted(MODULES)
        if not module.startswith("service.video.")
        for line, name in imports_of(module)
        if name == "av" or name.startswith("av.")
    ]
    assert found == []
