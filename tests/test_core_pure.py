"""core/ never imports Streamlit: every module imports with Streamlit made unimportable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_core_imports_without_streamlit() -> None:
    modules = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__main__")
    code = ("import sys; sys.modules['streamlit'] = None\n"
            + "".join(f"import core.{m}\n" for m in modules))
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert len(modules) >= 8
