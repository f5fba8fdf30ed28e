"""Demo jurisdiction and accounts for 宁波市镇海区 (`jmt demo-data`, run by `make run`).

One community officer per demo community, one officer per desk, a duty commander, a
trainer and an admin. Every demo account has the password DEMO_PASSWORD: demo only —
`JMT_ENV=production` refuses to load it. Officers and the commander carry made-up
DingTalk user ids (`demo-dt-<username>`), so a signed callback can answer as them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from casework.accounts import DESKS, create_user
from casework.gazetteer import STREETS
from casework.models import User

DEMO_PASSWORD = "jmt-demo-2026"
_SURNAMES = "张王李赵刘陈杨黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅"
DESK_ACCOUNTS = {
    "治安": "zhian",
    "法制": "fazhi",
    "交警": "jiaojing",
    "出入境": "churujing",
    "反诈": "fanzha",
}


def demo_accounts() -> list[dict[str, Any]]:
    accounts: list[dict[str, Any]] = [
        {
            "username": "commander",
            "role": "commander",
            "display_name": "值班指挥长",
            "mobile": "13800000000",
            "dingtalk_id": "demo-dt-commander",
            "on_duty": True,
        },
        {"username": "trainer", "role": "trainer", "display_name": "语料训练员"},
        {"username": "admin", "role": "admin", "display_name": "系统管理员"},
    ]
    for desk in DESKS:
        accounts.append(
            {
                "username": DESK_ACCOUNTS[desk],
                "role": "officer",
                "desk": desk,
                "display_name": f"{desk}民警",
                "mobile": None,
                "dingtalk_id": f"demo-dt-{DESK_ACCOUNTS[desk]}",
            }
        )
    index = 0
    for communities in STREETS.values():
        for community in communities:
            surname = _SURNAMES[index % len(_SURNAMES)]
            accounts.append(
                {
                    "username": f"officer{index + 1:02d}",
                    "role": "officer",
                    "community": community,
                    "display_name": f"{surname}警官（{community}）",
                    "mobile": f"1390000{index + 1:04d}",
                    "dingtalk_id": f"demo-dt-officer{index + 1:02d}",
                }
            )
            index += 1
    return accounts


def load(*, session: Session) -> list[str]:
    """Create the demo accounts that do not exist yet; returns the names created."""
    created = []
    for spec in demo_accounts():
        existing = session.execute(
            select(User).where(User.username == spec["username"])
        ).scalar_one_or_none()
        if existing is not None:
            # demo databases made before revision 0010 get their DingTalk ids
            existing.dingtalk_id = existing.dingtalk_id or spec.get("dingtalk_id")
            continue
        user = create_user(
            session=session,
            username=spec["username"],
            password=DEMO_PASSWORD,
            role=spec["role"],
            community=spec.get("community"),
            desk=spec.get("desk"),
            dingtalk_id=spec.get("dingtalk_id"),
        )
        user.display_name, user.mobile = spec.get("display_name"), spec.get("mobile")
        user.on_duty = bool(spec.get("on_duty"))
        created.append(spec["username"])
    return created
