"""Every ```python example in docs/client.md runs, over vm:// and over a TCP connection.

Each example gets a fresh broker: over vm:// the embedded vm://localhost broker is shut down
after it, over TCP "vm://localhost" in the example is replaced by a new running_broker's URL.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ferrymq.client import vm
from ferrymq.testing import running_broker

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
_FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _examples() -> list[tuple[int, str]]:
    text = DOC.read_text()
    return [(text[: m.start()].count("\n") + 1, m.group(1)) for m in _FENCE.finditer(text)]


EXAMPLES = _examples()


def test_the_guide_has_examples() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("transport", ["vm", "amqp"])
@pytest.mark.parametrize(("line", "code"), EXAMPLES, ids=[f"line{n}" for n, _ in EXAMPLES])
def test_example_runs(
    line: int, code: str, transport: str, capsys: pytest.CaptureFixture[str]
) -> None:
    compiled_name = f"{DOC.name}:{line}"
    if transport == "vm":
        try:
            exec(compile(code, compiled_name, "exec"), {"__name__": "__main__"})
        finally:
            vm.shutdown("localhost")
        return
    if "vm.shutdown" in code or "vm.register" in code:
        pytest.skip("this example is about vm:// itself")
    with running_broker() as broker:
        tcp = code.replace('"vm://localhost"', repr(broker.amqp_url))
        exec(compile(tcp, compiled_name, "exec"), {"__name__": "__main__"})
