"""Pure text helpers: money, numbers, time and keyword normalisation."""

from datetime import datetime, timezone

import pytest

from actions import parsing
from casework.clock import BEIJING

NOW = datetime(2026, 11, 28, 10, 30, tzinfo=BEIJING)  # a Saturday, Beijing time


@pytest.mark.parametrize(
    ("text", "yuan"),
    [
        ("两万", 20000),
        ("一万二", 12000),
        ("3.5万", 35000),
        ("两千八", 2800),
        ("1.5w", 15000),
        ("八百块", 800),
        ("5000元", 5000),
        ("三千五百元", 3500),
        ("2万5", 25000),
        ("十万", 100000),
        ("一百零五块", 105),
        ("一千零五十元", 1050),
        ("被骗了两万多", 20000),
        ("转了3000", 3000),
        ("一共转了12万", 120000),
        ("五十万", 500000),
        ("1,200元", 1200),
    ],
)
def test_parse_amount_to_yuan(text, yuan):
    assert parsing.parse_amount(text) == yuan


@pytest.mark.parametrize("text", ["13812345678", "对方电话13812345678", "没钱", "不记得了", ""])
def test_parse_amount_ignores_what_is_not_money(text):
    assert parsing.parse_amount(text) is None


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("刚才", "2026-11-28T10:30"),
        ("十分钟前", "2026-11-28T10:20"),
        ("两个小时前", "2026-11-28T08:30"),
        ("半小时前", "2026-11-28T10:00"),
        ("昨天晚上", "2026-11-27T20:00"),
        ("昨天晚上八点半", "2026-11-27T20:30"),
        ("今天下午3点", "2026-11-28T15:00"),
        ("前天下午四点多", "2026-11-26T16:00"),
        ("凌晨两点", "2026-11-28T02:00"),
        ("上周五", "2026-11-20"),
        ("周三", "2026-11-25"),
        ("11月20号", "2026-11-20"),
        ("12月3日", "2025-12-03"),
    ],
)
def test_parse_time_relative_to_now(text, iso):
    assert parsing.parse_time(text, NOW) == iso


def test_parse_time_without_a_time_is_none():
    assert parsing.parse_time("不记得了", NOW) is None


def utc(day: int, hour: int, minute: int) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("now", "text", "iso"),
    [
        # Issue 9: 06:29 Beijing on the 30th is 22:29 UTC on the 29th; 昨天 is the 29th.
        (utc(29, 22, 29), "昨天", "2026-11-29"),
        (utc(29, 22, 29), "今天", "2026-11-30"),
        (utc(29, 22, 29), "昨天晚上八点", "2026-11-29T20:00"),
        (utc(29, 22, 29), "刚才", "2026-11-30T06:29"),
        (utc(29, 22, 29), "两个小时前", "2026-11-30T04:29"),
        # A naive instant is UTC (casework.clock's rule), not the host's local time.
        (datetime(2026, 11, 29, 22, 29), "昨天", "2026-11-29"),
        # Around midnight UTC: 23:59 UTC is already 07:59 on the next day in Beijing, and
        # 00:01 UTC the same Beijing day; 16:00 UTC is Beijing midnight.
        (utc(29, 23, 59), "昨天", "2026-11-29"),
        (utc(30, 0, 1), "昨天", "2026-11-29"),
        (utc(30, 0, 1), "今天上午九点", "2026-11-30T09:00"),
        (utc(29, 15, 59), "今天", "2026-11-29"),
        (utc(29, 16, 0), "今天", "2026-11-30"),
        (utc(29, 16, 0), "昨晚十一点", "2026-11-29T23:00"),
        (utc(29, 16, 0), "前天", "2026-11-28"),
        (utc(29, 16, 0), "周一", "2026-11-30"),
    ],
)
def test_parse_time_resolves_relative_times_in_beijing_time(now, text, iso):
    assert parsing.parse_time(text, now) == iso


def test_parse_time_defaults_to_the_current_beijing_day():
    today = datetime.now(BEIJING).strftime("%Y-%m-%d")
    assert parsing.parse_time("今天") in (today, datetime.now(BEIJING).strftime("%Y-%m-%d"))


def test_find_phones_mobile_landline_and_service_numbers():
    text = "他用13812345678打给我，还有0574-86251234，自称95588客服"
    assert parsing.find_phones(text) == ["13812345678", "057486251234", "95588"]


def test_find_bank_accounts_excludes_id_card_numbers():
    text = "收款卡号6222 0212 3456 7890 123，他还要我身份证330211199001011234"
    assert parsing.find_bank_accounts(text) == ["6222021234567890123"]


def test_mask_pii_masks_phone_id_card_and_bank_card():
    masked = parsing.mask_pii("卡号6222021234567890123 手机13812345678 身份证330211199001011234")
    assert masked == "卡号6222***********0123 手机138****5678 身份证330211********1234"
    assert "13812345678" not in masked


@pytest.mark.parametrize(
    ("text", "lost"),
    [
        ("已经转了两万", True),
        ("被骗了五千", True),
        ("钱打过去了", True),
        ("对方让我转钱我还没转", False),
        ("还没付", False),
        ("这是不是骗子", None),
    ],
)
def test_money_lost_from_text(text, lost):
    assert parsing.money_lost_from_text(text) is lost


@pytest.mark.parametrize(
    ("text", "fraud_type"),
    [
        ("做任务点赞返佣金", "刷单返利"),
        ("老师带我炒股", "虚假投资理财"),
        ("网贷要先交解冻金", "虚假网络贷款"),
        ("快递丢了客服说理赔", "冒充电商物流客服"),
        ("说我涉嫌洗钱让我转到安全账户", "冒充公检法"),
        ("注销校园贷不然影响征信", "虚假征信"),
        ("买游戏装备被骗", "网络游戏虚假交易"),
        ("网恋对象叫我投资", "虚假投资理财"),
        ("老板加我QQ让我转账", "冒充领导熟人"),
        ("部队采购要我先垫付", "冒充军警购物"),
    ],
)
def test_fraud_type_from_text(text, fraud_type):
    assert parsing.fraud_type_from_text(text) == fraud_type


@pytest.mark.parametrize(
    ("text", "method"),
    [
        ("扫码付的", "扫码支付"),
        ("银行卡转账", "银行卡转账"),
        ("用支付宝转的", "支付宝转账"),
        ("微信转了他", "微信转账"),
        ("买了京东卡给他", "充值卡/游戏点卡"),
        ("不知道", None),
    ],
)
def test_payment_method_from_text(text, method):
    assert parsing.payment_method_from_text(text) == method


@pytest.mark.parametrize(
    ("text", "bitten"),
    [("孩子被狗咬了", True), ("咬破皮了", True), ("没被咬", False), ("狗一直叫", None)],
)
def test_bitten_from_text(text, bitten):
    assert parsing.bitten_from_text(text) is bitten


@pytest.mark.parametrize(
    ("text", "topic"),
    [
        ("老板欠我三个月工资", "劳动欠薪"),
        ("想离婚孩子抚养权", "婚姻家庭"),
        ("房东不退押金", "房屋租赁"),
        ("朋友借钱不还", "借贷债务"),
        ("被车撞了对方不赔", "交通事故赔偿"),
    ],
)
def test_legal_topic_from_text(text, topic):
    assert parsing.legal_topic_from_text(text) == topic


@pytest.mark.parametrize(
    ("text", "ongoing"),
    [
        ("是的还在吵", True),
        ("现在正在敲", True),
        ("刚停了", False),
        ("现在没有了 已经停了", False),
        ("不知道", None),
    ],
)
def test_ongoing_from_text(text, ongoing):
    assert parsing.ongoing_from_text(text) is ongoing


@pytest.mark.parametrize(
    ("text", "yuan"),
    [("昨天下午3点被骗了", None), ("被骗了五千块", 5000), ("转了3000元", 3000), ("两万", 20000)],
)
def test_parse_amount_with_a_unit_required(text, yuan):
    assert parsing.parse_amount(text, require_unit=True) == yuan
