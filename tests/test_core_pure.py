"""core/ never imports Streamlit: every module of every layer imports with Streamlit made unimportable."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_core_imports_without_streamlit() -> None:
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "core").rglob("*.py")
                     if p.name not in ("__main__.py", "__init__.py"))
    code = "import sys; sys.modules['streamlit'] = None\n" + "".join(f"import {m}\n" for m in modules)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(modules) >= 30 and any(m.startswith("core.pipelines.") for m in modules)
