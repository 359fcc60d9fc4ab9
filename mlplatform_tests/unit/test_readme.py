"""The README's spec example is a valid spec (docs that drift fail the build)."""

from __future__ import annotations

import re
from pathlib import Path

from mlplatform.spec import ProjectSpec, load_spec
from mlplatform.steps.train_sklearn import candidate_problems

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_spec_example_validates(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    example = next(b for b in blocks if "name: store_sales" in b)
    path = tmp_path / "store_sales.yaml"
    path.write_text(example, encoding="utf-8")
    spec = load_spec(path)
    assert spec.task == "regression" and spec.data.delimiter == ";"
    assert candidate_problems(spec) == []


def spec_fields(model: type, prefix: str = "") -> list[str]:
    """Dotted field paths of a spec model; sequences of models end in '[]'."""
    out = []
    for name, info in model.model_fields.items():
        if name == "source_file":
            continue
        args = getattr(info.annotation, "__args__", (info.annotation,))
        sub = next((a for a in args if isinstance(a, type) and hasattr(a, "model_fields")), None)
        origin = getattr(info.annotation, "__origin__", None)
        if sub is None or origin is dict:
            out.append(f"{prefix}{name}")
        elif origin is tuple:
            out.append(f"{prefix}{name}[]")
            out += spec_fields(sub, f"{prefix}{name}[].")
        else:
            out += spec_fields(sub, f"{prefix}{name}.")
    return out


def test_readme_documents_every_spec_field() -> None:
    text = README.read_text(encoding="utf-8")
    fields = spec_fields(ProjectSpec)
    assert "partitions.granularity" in fields and "candidates[]" in fields
    assert "candidates[].search.n_trials" in fields and "evaluation.gates[].metric" in fields
    assert [f for f in fields if f"`{f}" not in text] == []
