import re
from pathlib import Path

BASE = Path(__file__).resolve().parents[2]


def _settings_variables() -> set[str]:
    text = (BASE / "config" / "settings.py").read_text()
    names = set(re.findall(r'env_(?:str|bool|int|secret|list)\(\s*"([A-Z_]+)"', text))
    names |= set(re.findall(r'os\.environ\.get\(\s*"([A-Z_]+)"', text))
    return names | {"HOST", "PORT"}


def test_every_setting_variable_is_in_env_example_with_a_comment():
    example = (BASE / ".env.example").read_text()
    for name in _settings_variables():
        match = re.search(rf"(^#.*\n)+{name}=", example, re.MULTILINE)
        assert match, f"{name} is missing from .env.example or has no comment above it"


def test_every_setting_variable_is_in_the_readme():
    readme = (BASE / "README.md").read_text()
    for name in _settings_variables():
        assert f"`{name}`" in readme, f"{name} is missing from README.md"


def test_the_readme_opens_with_the_two_commands():
    readme = (BASE / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make run" in first_block and "make test" in first_block
