"""Print the requirements of the floor run (`make test-floor`): the lowest version pyproject.toml allows of
each package in FLOORS, the other runtime dependencies as declared, and the test tools.

trl is left out: every trl release needs accelerate>=1.4, above the floor; its parity test skips without it.
"""

import re
import tomllib
from pathlib import Path

FLOORS = ("torch", "transformers", "peft", "accelerate")
NOT_AT_FLOOR = ("trl",)

project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
extras = project["optional-dependencies"]
for req in project["dependencies"]:
    name = re.match(r"[\w.-]+", req).group()
    low = re.search(r">=\s*([\w.]+)", req)
    if name in FLOORS and not low:
        raise SystemExit(f"pyproject.toml: {req!r} has no lower bound to test")
    print(f"{name}=={low.group(1)}" if name in FLOORS else req)
for req in extras["dev"] + extras.get("postgres", []):
    if re.match(r"[\w.-]+", req).group() not in NOT_AT_FLOOR:
        print(req)
