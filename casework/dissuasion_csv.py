"""Dissuasion leads from a CSV file (the municipal platform's export, uploaded in the
console): UTF-8 (with or without BOM) or GBK/GB18030, English or Chinese headers.

Every row is checked on its own: good rows become tasks, bad rows are reported with their
line number in the file (the header is line 1) and the reason. Times without a zone are
the platform's local time, Beijing; levels may be written 高/中/低(风险).
"""

from __future__ import annotations

import csv
import io
from datetime import datetime

from pydantic import ValidationError
from sqlalchemy.orm import Session

from casework import dissuasion
from casework.cases import CaseError
from casework.clock import BEIJING
from casework.dissuasion_schemas import LeadIn, RowError, UploadResult
from casework.models import User

MAX_BYTES = 2 * 1024 * 1024
MAX_ROWS = 5000
DEFAULT_SOURCE = "csv-upload"  # (source, external_id) stays unique: a re-upload is a no-op
HEADERS = {
    "external_id": ("external_id", "预警编号", "线索编号", "编号", "id"),
    "phone": ("phone", "手机号", "手机号码", "电话", "联系电话", "号码"),
    "name": ("name", "姓名"),
    "address": ("address", "地址", "住址"),
    "risk_type": ("risk_type", "风险类型", "诈骗类型", "预警类型"),
    "risk_level": ("risk_level", "风险等级", "等级"),
    "warned_at": ("warned_at", "预警时间", "时间"),
    "source": ("source", "来源", "预警来源"),
}
LEVELS = {"高": "high", "高风险": "high", "中": "medium", "中风险": "medium", "低": "low"}
LEVELS["低风险"] = "low"
TIME_FORMATS = (
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
)


def decode(data: bytes) -> str:
    """UTF-8 first (a GBK file is almost never valid UTF-8), then GB18030 (GBK's superset)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030")
    except UnicodeDecodeError as error:
        raise CaseError("文件编码无法识别：请使用 UTF-8 或 GBK 编码的 CSV") from error


def _columns(fieldnames: list[str]) -> dict[str, str]:
    """Our field → the file's column."""
    found: dict[str, str] = {}
    for column in fieldnames:
        name = (column or "").strip().lower()
        for field, aliases in HEADERS.items():
            if name in aliases and field not in found:
                found[field] = column
    required = ("external_id", "phone", "risk_type", "risk_level", "warned_at")
    missing = [field for field in required if field not in found]
    if missing:
        raise CaseError(f"CSV 缺少列：{', '.join(missing)}（第 1 行为表头）")
    return found


def _when(value: str) -> str | datetime:
    """ISO 8601 as it is; the platform's local 'YYYY-MM-DD HH:MM[:SS]' as Beijing time."""
    text = value.strip()
    for layout in TIME_FORMATS:
        try:
            return datetime.strptime(text, layout).replace(tzinfo=BEIJING)
        except ValueError:
            continue
    return text


def _reason(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}" for item in error.errors()
    )


def parse(data: bytes) -> tuple[list[LeadIn], list[RowError], int]:
    """(good leads, bad rows, rows read)."""
    if len(data) > MAX_BYTES:
        raise CaseError(f"文件过大：最多 {MAX_BYTES // 1024 // 1024} MB")
    reader = csv.DictReader(io.StringIO(decode(data), newline=""))
    try:
        return _rows(reader)
    except csv.Error as error:  # a NUL byte, an endless quoted field ...
        raise CaseError(f"第 {reader.line_num + 1} 行无法读取：{error}") from error


def _rows(reader: csv.DictReader) -> tuple[list[LeadIn], list[RowError], int]:
    columns = _columns(list(reader.fieldnames or []))
    leads: list[LeadIn] = []
    errors: list[RowError] = []
    rows = 0
    for row in reader:
        line = reader.line_num
        values = {field: (row.get(column) or "").strip() for field, column in columns.items()}
        if not any(values.values()):
            continue  # a blank line
        rows += 1
        if rows > MAX_ROWS:
            raise CaseError(f"行数过多：每次最多 {MAX_ROWS} 行")
        values["risk_level"] = LEVELS.get(values["risk_level"], values["risk_level"])
        values["source"] = values.get("source") or DEFAULT_SOURCE
        try:
            lead = LeadIn.parse_obj(
                {
                    **{
                        key: value
                        for key, value in values.items()
                        if value or key not in ("name", "address")
                    },
                    "warned_at": _when(values["warned_at"]),
                }
            )
        except ValidationError as error:
            errors.append(RowError(line=line, error=_reason(error)))
            continue
        leads.append(lead)
    return leads, errors, rows


def upload(*, session: Session, user: User, data: bytes) -> UploadResult:
    """Import a CSV file of leads (commanders, admins, the 反诈 desk)."""
    dissuasion.check_uploader(user)
    leads, errors, rows = parse(data)
    accepted = dissuasion.ingest_leads(session=session, leads=leads, actor=user, channel="upload")
    return UploadResult(**accepted.dict(), rows=rows, errors=errors)
