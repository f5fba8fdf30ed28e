"""Pure helpers that turn what residents write into values officers can use.

No Rasa, no I/O: every function takes text (and a clock where time matters) and
returns a normalised value or None. Unit-tested in tests/unit/test_parsing.py.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from stdnum import luhn
from stdnum.cn import ric

from casework.clock import beijing, beijing_now
from casework.privacy import BANK_CARD, ID_CARD, LANDLINE, MOBILE, SERVICE, digits_only
from casework.privacy import mask_pii as mask_pii  # re-exported: actions mask with it too

# ---------------------------------------------------------------- Chinese numerals

_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "幺": 1,
    "二": 2,
    "两": 2,
    "俩": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_BIG_UNITS = {"万": 10_000, "w": 10_000, "W": 10_000, "亿": 100_000_000}
_NUMERAL_CHARS = "".join(_DIGITS) + "".join(_SMALL_UNITS) + "".join(_BIG_UNITS) + "0123456789.点"


def chinese_to_number(text: str) -> float | None:
    """'两万' → 20000, '一万二' → 12000, '3.5万' → 35000, '两千八' → 2800, '1.5w' → 15000."""
    text = text.strip().replace(",", "").replace("，", "")
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    total = 0.0  # completed big-unit groups
    section = 0.0  # the group being read, below 万
    number: float | None = None  # the digit(s) waiting for a unit
    last_unit = 1
    zero_seen = False  # 一百零五: after 零 a trailing digit is units, not tens
    i = 0
    while i < len(text):
        char = text[i]
        match = re.match(r"\d+(?:\.\d+)?", text[i:])
        if match:
            number = float(match.group())
            i += len(match.group())
            continue
        if char in _DIGITS:
            number = float(_DIGITS[char])
            zero_seen = zero_seen or char in "零〇"
        elif char in _SMALL_UNITS:
            unit = _SMALL_UNITS[char]
            section += (number if number is not None else 1) * unit
            number, last_unit, zero_seen = None, unit, False
        elif char in _BIG_UNITS:
            unit = _BIG_UNITS[char]
            section += number or 0
            total += (section or 1) * unit
            section, number, last_unit, zero_seen = 0.0, None, unit, False
        else:
            return None
        i += 1
    if number is not None:
        # A trailing digit after a unit means "of the next lower unit": 一万二 = 12000.
        implied = last_unit >= 100 and number < 10 and not zero_seen
        section += number * (last_unit / 10 if implied else 1)
    return total + section


_AMOUNT = re.compile(rf"([{_NUMERAL_CHARS}]+)\s*(?:多)?\s*(元|块钱|块|人民币|rmb|RMB|万元|w|W)?")


def parse_amount(text: str, *, require_unit: bool = False) -> float | None:
    """The first money amount in `text`, in yuan. Bare numbers count only when short, and
    not at all with `require_unit` (for free text, where "3点" is a time, not money)."""
    text = re.sub(r"(?<=\d)[,，](?=\d{3})", "", text)  # 1,200 → 1200
    for match in _AMOUNT.finditer(text):
        raw, unit = match.group(1), match.group(2)
        if raw in ("点", ".") or not any(c not in "点." for c in raw):
            continue
        if unit is None and all(c in _DIGITS for c in raw):
            continue  # 一共, 一下, 三个: a lone Chinese digit is a word, not an amount
        value = chinese_to_number(raw.replace("点", "."))
        if value is None or value <= 0:
            continue
        if unit in ("万元",):
            value *= 10_000
        has_unit = unit is not None or any(c in raw for c in "万wW亿千百十")
        digits = re.sub(r"\D", "", raw)
        if not has_unit and (require_unit or len(digits) >= 7):  # a time, phone, card ...
            continue
        return value
    return None


# ---------------------------------------------------------------- numbers people paste


def find_phones(text: str) -> list[str]:
    """Mobile, landline and service numbers (95xxx, 400-...), digits only."""
    found = []
    for pattern in (MOBILE, LANDLINE, SERVICE):
        found += [digits_only(m.group(1)) for m in pattern.finditer(text)]
    return list(dict.fromkeys(found))


def is_valid_id_card(number: str) -> bool:
    """A resident ID card number (居民身份证号) with a correct check digit and a real birth
    date and place (python-stdnum's `cn.ric`)."""
    return bool(ric.is_valid(number))


def looks_like_id_card(number: str) -> bool:
    """Shaped like an ID card number: 18 characters, a real place code and birth date,
    whatever the check digit says (a mistyped ID card is still an ID card)."""
    digits = digits_only(number).upper()
    if ID_CARD.fullmatch(digits) is None:
        return False
    try:
        ric.get_birth_place(digits)
    except (ValueError, KeyError):  # stdnum's InvalidComponent is a ValueError
        return False
    return True


def is_luhn_valid(number: str) -> bool:
    """The Luhn check digit most bank cards carry (UnionPay 62…, Visa, Mastercard)."""
    digits = digits_only(number)
    return digits.isdigit() and bool(luhn.is_valid(digits))


def find_id_cards(text: str) -> list[str]:
    """ID card numbers with a correct check digit, upper-case X."""
    found = [digits_only(m.group(1)).upper() for m in ID_CARD.finditer(text)]
    return [number for number in dict.fromkeys(found) if is_valid_id_card(number)]


def find_bank_accounts(text: str) -> list[str]:
    """Bank-card numbers (16–19 digits, grouped or not), excluding ID card numbers.

    An ID card number is never "the scammer's account": one with a valid check digit, or
    one shaped like an ID (real place code and birth date) whose check digit is wrong —
    a mistyped ID card is far likelier than a card number that happens to start with a
    county code followed by a birth date. Cards failing the Luhn check are kept (see
    `unverified_accounts`)."""
    id_spans = [
        m.span(1)
        for m in ID_CARD.finditer(text)
        if is_valid_id_card(m.group(1).upper()) or looks_like_id_card(m.group(1))
    ]
    cards = []
    for match in BANK_CARD.finditer(text):
        start, end = match.span(1)
        # Overlap, not equality: the 17 digits before an ID card's final X are no card.
        if any(start < id_end and id_start < end for id_start, id_end in id_spans):
            continue
        number = digits_only(match.group(1))
        if 16 <= len(number) <= 19 and number.isdigit():
            cards.append(number)
    return list(dict.fromkeys(cards))


def unverified_accounts(accounts: list[str]) -> list[str]:
    """The account numbers that fail the Luhn check.

    They are kept, not refused and not asked again: most Chinese bank cards carry a Luhn
    digit, but not all (some older and corporate 对公 accounts do not), a victim reading a
    number off a scam chat may get one digit wrong, and in a stop-payment (紧急止付)
    minutes matter more than a perfect number — the bank can resolve a near miss. The
    officer sees the flag and checks the number with the resident."""
    return [account for account in accounts if not is_luhn_valid(account)]


# ---------------------------------------------------------------- time

_DAY_WORDS = {
    "今天": 0,
    "今日": 0,
    "今早": 0,
    "今晚": 0,
    "昨天": -1,
    "昨日": -1,
    "昨晚": -1,
    "前天": -2,
    "大前天": -3,
}
_PERIODS = {  # period word -> (default hour, add 12 to 1..11 o'clock?)
    "凌晨": (3, False),
    "早上": (8, False),
    "早晨": (8, False),
    "今早": (8, False),
    "上午": (10, False),
    "中午": (12, False),
    "下午": (15, True),
    "傍晚": (18, True),
    "晚上": (20, True),
    "今晚": (20, True),
    "昨晚": (20, True),
    "夜里": (23, True),
    "半夜": (0, False),
    "深夜": (23, True),
}
_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_NUM = r"[0-9零一二两三四五六七八九十]+"


def _num(text: str) -> int:
    value = chinese_to_number(text)
    return int(value) if value is not None else 0


def parse_time(text: str, now: datetime | None = None) -> str | None:
    """A Chinese time expression → ISO 'YYYY-MM-DDTHH:MM' (or a date) in Beijing time.

    Handles 刚才/刚刚, N分钟前/N个小时前, 今天/昨天/前天 + 上午/下午/晚上 + N点(半),
    上周三/周五, M月D日/D号. Returns None when nothing is recognised.
    Residents speak Beijing time whatever the host's clock says: 昨天 at 06:29 on the
    30th (22:29 UTC on the 29th) is the 29th. `now` defaults to the current instant
    (tests pass one); a naive `now` is UTC, as everywhere in casework.clock.
    """
    now = beijing(now) if now is not None else beijing_now()
    text = text.replace("點", "点").replace("钟", "")
    if re.search(r"刚才|刚刚|就在刚|现在|正在", text):
        return now.strftime("%Y-%m-%dT%H:%M")
    m = re.search(rf"({_NUM}|半)\s*(分|个?小时|个?钟头|天)(?:之|以)?前", text)
    if m:
        amount = 0.5 if m.group(1) == "半" else _num(m.group(1))
        unit = m.group(2)
        delta = (
            timedelta(minutes=amount)
            if unit == "分"
            else timedelta(days=amount)
            if unit == "天"
            else timedelta(hours=amount)
        )
        return (now - delta).strftime("%Y-%m-%dT%H:%M")

    day: datetime | None = None
    for word, offset in sorted(_DAY_WORDS.items(), key=lambda kv: -len(kv[0])):
        if word in text:
            day = now + timedelta(days=offset)
            break
    m = re.search(r"(上+)(?:个)?(?:周|星期|礼拜)([一二三四五六日天])", text)
    if m:
        weeks_back = len(m.group(1))
        monday = now - timedelta(days=now.weekday(), weeks=weeks_back)
        day = monday + timedelta(days=_WEEKDAYS[m.group(2)])
    elif (m := re.search(r"(?:这|本)?(?:周|星期|礼拜)([一二三四五六日天])", text)) and day is None:
        day = now - timedelta(days=now.weekday()) + timedelta(days=_WEEKDAYS[m.group(1)])
        if day.date() > now.date():
            day -= timedelta(weeks=1)
    m = re.search(rf"(?:({_NUM})月)?({_NUM})(?:日|号)", text)
    if m:
        month = _num(m.group(1)) if m.group(1) else now.month
        try:
            day = now.replace(month=month, day=_num(m.group(2)))
        except ValueError:
            day = None
        if day is not None and day > now:
            day = day.replace(year=now.year - 1)

    period = next((p for p in sorted(_PERIODS, key=len, reverse=True) if p in text), None)
    hour: int | None = None
    minute = 0
    m = re.search(rf"({_NUM})\s*[点:：时]\s*(半|一刻|三刻|{_NUM}分?|\d{{2}})?", text)
    if m:
        hour = _num(m.group(1))
        rest = m.group(2) or ""
        minute = {"半": 30, "一刻": 15, "三刻": 45}.get(
            rest, _num(rest.rstrip("分")) if rest else 0
        )
        if period and _PERIODS[period][1] and 1 <= hour <= 11:
            hour += 12
        if period in ("半夜", "凌晨") and hour == 12:
            hour = 0
    elif period:
        hour = _PERIODS[period][0]

    if day is None and hour is None:
        return None
    day = day or now
    if hour is None:
        return day.strftime("%Y-%m-%d")
    if not 0 <= hour <= 23 or not 0 <= minute <= 59:
        return day.strftime("%Y-%m-%d")
    return day.replace(hour=hour, minute=minute).strftime("%Y-%m-%dT%H:%M")


# ---------------------------------------------------------------- keyword normalisers

PAYMENT_METHODS = {
    "扫码支付": ("扫码", "二维码", "扫了", "付款码", "收款码"),
    "微信转账": ("微信转", "微信付", "微信红包", "vx转", "wx转"),
    "支付宝转账": ("支付宝", "zfb"),
    "银行卡转账": ("银行卡", "卡转", "转账", "转帐", "网银", "手机银行", "汇款", "打款", "柜台"),
    "充值卡/游戏点卡": ("充值卡", "点卡", "购物卡", "京东卡", "游戏币"),
    "现金": ("现金", "当面给"),
    "虚拟货币": ("USDT", "usdt", "比特币", "虚拟币", "泰达币"),
}


def payment_method_from_text(text: str) -> str | None:
    for method, words in PAYMENT_METHODS.items():
        if any(word in text for word in words):
            return method
    return None


FRAUD_TYPES = {
    "刷单返利": ("刷单", "返利", "做任务", "点赞", "返佣", "佣金", "垫付任务"),
    "虚假投资理财": (
        "投资",
        "理财",
        "炒股",
        "股票群",
        "带单",
        "荐股",
        "虚拟币",
        "USDT",
        "数字货币",
        "博彩",
    ),
    "虚假网络贷款": ("贷款", "网贷", "解冻金", "放款", "额度", "保证金"),
    "冒充电商物流客服": ("客服", "退款", "理赔", "快递丢", "退货", "会员自动续费", "百万保障"),
    "冒充公检法": ("公安局", "检察院", "法院", "洗钱", "通缉", "安全账户", "逮捕", "警官"),
    "虚假征信": ("征信", "校园贷", "注销账户", "学生贷"),
    "网络游戏虚假交易": ("游戏", "装备", "账号交易", "皮肤", "代练", "点券"),
    "网络婚恋交友": ("交友", "婚恋", "网恋", "男朋友", "女朋友", "对象", "杀猪盘", "相亲"),
    "冒充领导熟人": ("领导", "老板", "老同学", "熟人", "亲戚", "班主任", "校长", "冒充我"),
    "冒充军警购物": ("部队", "军人", "采购", "武警", "军官", "营区"),
}


def fraud_type_from_text(text: str) -> str | None:
    for fraud_type, words in FRAUD_TYPES.items():
        if fraud_type in text or any(word in text for word in words):
            return fraud_type
    return None


LEGAL_TOPICS = {
    "劳动欠薪": (
        "工资",
        "欠薪",
        "劳动",
        "工伤",
        "辞退",
        "开除",
        "加班",
        "社保",
        "老板不给钱",
        "包工头",
    ),
    "婚姻家庭": ("离婚", "结婚", "抚养", "彩礼", "家暴", "老公", "老婆", "赡养", "夫妻"),
    "借贷债务": ("借钱", "借款", "欠钱", "欠条", "借条", "还钱", "债", "担保", "利息"),
    "房屋租赁": ("房东", "租房", "押金", "房租", "租客", "合同到期", "中介"),
    "交通事故赔偿": ("车祸", "交通事故", "撞了", "追尾", "交强险", "肇事", "被车撞"),
    "消费维权": (
        "退款",
        "商家",
        "买到",
        "假货",
        "消费",
        "预付卡",
        "跑路",
        "健身房",
        "维权",
        "质量",
    ),
    "继承": ("遗产", "继承", "遗嘱", "过世", "去世"),
    "人身损害": ("打伤", "受伤", "医药费", "赔偿", "伤残", "摔伤", "被打"),
}


def legal_topic_from_text(text: str) -> str | None:
    for topic, words in LEGAL_TOPICS.items():
        if topic in text or any(word in text for word in words):
            return topic
    return None


# "让我转钱" says what the scammer asked, not whether it happened: no guess from that.
_NOT_YET = re.compile(r"(还)?(没|未|没有)(转|付|给|打|汇|交|充|扫)|还没|准备(转|付)|要不要(转|付)")
_ALREADY = re.compile(r"(已经|已)(转|付|打|汇|交|充)|(转|付|打|汇|交|充|骗)(了|走|过去)|被骗")


def money_lost_from_text(text: str) -> bool | None:
    """Has money already left? True/False when the text says so, else None."""
    if _NOT_YET.search(text):
        return False
    if _ALREADY.search(text):
        return True
    return None


_BITTEN = re.compile(r"(被|把|给)?[^不没]{0,6}咬(伤|了|到|破|出血)|咬了一口|被咬")
_NOT_BITTEN = re.compile(r"(没|没有|未)(被)?(咬|伤)")


def bitten_from_text(text: str) -> bool | None:
    if _NOT_BITTEN.search(text):
        return False
    if _BITTEN.search(text):
        return True
    return None


_STOPPED = re.compile(r"停了|不吵了|没声音了|安静了|结束了|现在没有|已经没|没在吵|不响了")
_ONGOING = re.compile(r"还在|正在|现在|一直|没停|还没停|继续|吵着|响着|天天|每天")


def ongoing_from_text(text: str) -> bool | None:
    """Is the noise still going on? True/False when the answer says so, else None."""
    if _STOPPED.search(text):
        return False
    if _ONGOING.search(text):
        return True
    return None


# ---------------------------------------------------------------- answers to 我的社区

# Codes of casework.vocabulary.WARNING_TOPIC_LABELS (in its order) → words residents use.
WARNING_TOPIC_WORDS = {
    "fraud": ("电诈", "诈骗", "反诈", "防骗", "骗"),
    "weather": ("灾害", "天气", "台风", "暴雨", "气象", "防汛", "地震", "寒潮", "高温"),
    "traffic": ("交通", "路况", "出行", "道路", "交警"),
    "health": ("卫生", "疫情", "健康", "传染", "防疫", "疫苗"),
    "community": ("社区", "通知", "小区", "公告"),
}
_TOPIC_NUMBERS = {
    "1": 0,
    "2": 1,
    "3": 2,
    "4": 3,
    "5": 4,
    "一": 0,
    "二": 1,
    "三": 2,
    "四": 3,
    "五": 4,
}
_NUMBERED_ONLY = re.compile(r"[\s、，,和与跟及还有第个号项条1-5一二三四五]+")
_ALL_TOPICS = re.compile(r"全部|随便|全都|都要|都可以|都行|都收|都订|所有|全选|默认|都好|全要|统统")
_NO_TOPIC = re.compile(r"都不|全不|一个都不|什么都不|不需要|^不要了?$|^不用了?$|^不了$")
_NEGATED = re.compile(r"除|不|别")
_ONLY = re.compile(r"只|仅")
_OTHERS_YES = re.compile(r"(其他|其它|其余|别的|剩下的?)[的也都]*(要|可以|行|收|订|好)")
_OTHERS_NO = re.compile(r"(其他|其它|其余|别的|剩下的?)[的也都]*(不|别|免)")
_CLAUSES = re.compile(r"[，,。；;！!\s]+|但是|但|其他|其它|其余|别的|剩下")


def _topics_in(clause: str) -> list[str]:
    codes = list(WARNING_TOPIC_WORDS)
    named = {code for code, words in WARNING_TOPIC_WORDS.items() if any(w in clause for w in words)}
    if not named and (re.search(r"[1-5]", clause) or _NUMBERED_ONLY.fullmatch(clause)):
        named = {codes[_TOPIC_NUMBERS[ch]] for ch in clause if ch in _TOPIC_NUMBERS}
    return [code for code in codes if code in named]


def warning_topics_from_text(text: str) -> list[str] | None:
    """The topics a resident chose, as codes in the vocabulary's order: "全部" → all five,
    "1 3" or "电诈和天气" → those, "除了交通都要" → all but traffic, "都不要" → [] (no
    warnings at all). None when the answer names no choice."""
    text = text.strip()
    codes = list(WARNING_TOPIC_WORDS)
    included: list[str] = []
    excluded: list[str] = []
    for clause in filter(None, _CLAUSES.split(text)):
        (excluded if _NEGATED.search(clause) else included).extend(_topics_in(clause))
    if not included and not excluded:
        if _NO_TOPIC.search(text):
            return []
        return codes if _ALL_TOPICS.search(text) else None
    if included and (_ONLY.search(text) or _OTHERS_NO.search(text) or not excluded):
        if _OTHERS_YES.search(text):
            return [code for code in codes if code not in excluded]
        return [code for code in codes if code in included]
    return [code for code in codes if code not in excluded]


_SKIP = re.compile(
    r"跳过|略过|^跳$|下一个|下一步|不填|不设置|不想说|不方便|不告诉|保密|以后再说|^不用了?$|^不了$"
)


def is_skip(text: str) -> bool:
    """The resident passes on a question of the 我的社区 intake (跳过, 不方便说 …)."""
    return bool(_SKIP.search(text.strip()))


_CONSENT_NO = re.compile(
    r"不同意|不愿意|不要|不用|不想|不留|不给|不方便|不好|拒绝|算了|跳过|略过|不了|没必要|不需要|^不$|^否"
)
_CONSENT_YES = re.compile(r"同意|愿意|可以|好|行|没问题|留|嗯|^是|^对|ok|要", re.IGNORECASE)


def consent_from_text(text: str) -> bool | None:
    """A clear yes (同意, 可以 …) or no (不同意, 跳过 …) to keeping a mobile number; None
    for anything else — only a clear yes keeps a number."""
    text = text.strip()
    if _CONSENT_NO.search(text):
        return False
    return True if _CONSENT_YES.search(text) else None
