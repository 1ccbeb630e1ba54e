"""One word per thing: every label a user reads for a contract value comes from `data.schema`, so a format is
跟岗研修 on the menu, in the reasons, in the project selection and in the CLI alike."""

from __future__ import annotations

from typing import get_args

import pytest

from api.events import EventType
from api.schemas import Format
from data.policy import FORMATS as POLICY_FORMATS
from data.schema import EVENT_TYPE, FORMAT, LEVEL, STAGE, TITLE, EnumSpec
from features.history import FORMATS as HISTORY_FORMATS
from recommender.explain import FORMAT_ZH, LEVEL_ZH
from recommender.retrieval import STAGES
from recommender.selection import Project, zh_label


def test_every_format_list_is_the_contracts() -> None:
    assert get_args(Format) == HISTORY_FORMATS == POLICY_FORMATS == FORMAT.values
    assert STAGE.values == STAGES
    assert tuple(EventType) == EVENT_TYPE.values


def test_label_maps_are_derived_from_the_contract() -> None:
    assert {v: FORMAT.aliases[v][0] for v in FORMAT.values} == FORMAT_ZH
    assert {int(v): LEVEL.aliases[v][0] for v in LEVEL.values} == LEVEL_ZH


@pytest.mark.parametrize("fmt", FORMAT.values)
def test_a_project_and_a_menu_name_a_format_alike(fmt: str) -> None:
    project = Project.from_row({"project_id": "P", "name": "某项目", "format": fmt}, default_class_size=50)
    assert project.format_label == FORMAT_ZH[fmt] == zh_label(FORMAT, fmt) == FORMAT.label(fmt)


def test_formats_use_the_names_of_the_policy_documents() -> None:
    assert FORMAT.label_map() == {
        "online": "线上",
        "offline": "线下集中",
        "blended": "混合式",
        "workshop": "工作坊",
        "shadowing": "跟岗研修",
        "school_based": "校本研修",
    }


@pytest.mark.parametrize("spec", [STAGE, TITLE, FORMAT, LEVEL])
def test_every_label_is_an_accepted_spelling(spec: EnumSpec) -> None:
    """A label written back into a file is read as the value it names."""
    lookup = spec.lookup()
    assert all(lookup[spec.label(v).lower()] == v for v in spec.values)
