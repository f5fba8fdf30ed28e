"""The demo district's places (宁波市镇海区): streets/towns and some of their communities.

Used to recognise a place named in a message and, later, to route a case to the
community officer of that place. Community lists are a demo subset, not an official roll.
"""

from __future__ import annotations

from dataclasses import dataclass

DISTRICT = "宁波市镇海区"

STREETS: dict[str, tuple[str, ...]] = {
    "招宝山街道": ("总浦桥社区", "车站路社区", "白龙社区", "城河社区", "梓荫社区", "后大街社区"),
    "蛟川街道": ("俞范社区", "迎周社区", "临江社区", "中官路社区", "炼化社区"),
    "骆驼街道": ("万景社区", "盛兴社区", "骆兴社区", "金华社区", "东邑社区"),
    "庄市街道": ("清水湖社区", "勤勇村", "兴庄社区", "万市社区", "永旺村"),
    "澥浦镇": ("汶溪村", "十七房村", "岚山村", "澥浦社区"),
    "九龙湖镇": ("西河村", "横溪村", "长石村", "九龙湖社区"),
}

# Colloquial short names residents use (骆驼 for 骆驼街道, 招宝山 for 招宝山街道 ...).
_STREET_ALIASES = {street.removesuffix("街道").removesuffix("镇"): street for street in STREETS}


@dataclass(frozen=True)
class Place:
    street: str | None
    community: str | None

    @property
    def label(self) -> str:
        return "".join(part for part in (self.street, self.community) if part)


def match_place(text: str) -> Place | None:
    """The street and community named in `text`, if any (a community beats a street)."""
    for street, communities in STREETS.items():
        for community in communities:
            if community in text:
                return Place(street=street, community=community)
    for alias, street in _STREET_ALIASES.items():
        if street in text or alias in text:
            return Place(street=street, community=None)
    return None
