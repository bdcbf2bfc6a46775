"""Builds realistic DSMR 5 telegrams with a correct CRC16 (computed here, independently)."""

from __future__ import annotations


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC (poly 0x8005 reflected = 0xA001, init 0): the P1 telegram checksum."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def telegram(
    *,
    stamp: str = "261201143015W",
    used_t1: str = "012345.678",
    used_t2: str = "009876.543",
    delivered_t1: str = "001234.567",
    delivered_t2: str = "002345.678",
    power_used: str = "01.193",
    power_delivered: str = "00.000",
    omit: tuple[str, ...] = (),
    totals: tuple[str, str] | None = None,
) -> bytes:
    """A DSMR 5.0.2 telegram like a Landis+Gyr E360 sends, CRC included."""
    lines = [
        "/Ene5\\T211 ESMR 5.0",
        "",
        "1-3:0.2.8(50)",
        f"0-0:1.0.0({stamp})",
        "0-0:96.1.1(4530303632303030303035353132313139)",
        f"1-0:1.8.1({used_t1}*kWh)",
        f"1-0:1.8.2({used_t2}*kWh)",
        f"1-0:2.8.1({delivered_t1}*kWh)",
        f"1-0:2.8.2({delivered_t2}*kWh)",
        "0-0:96.14.0(0002)",
        f"1-0:1.7.0({power_used}*kW)",
        f"1-0:2.7.0({power_delivered}*kW)",
        "0-0:96.7.21(00010)",
        "0-0:96.7.9(00003)",
        "1-0:99.97.0(1)(0-0:96.7.19)(200520063322S)(0000000232*s)",
        "1-0:32.32.0(00004)",
        "1-0:32.36.0(00000)",
        "0-0:96.13.0()",
        "1-0:32.7.0(231.0*V)",
        "1-0:31.7.0(005*A)",
        "1-0:21.7.0(01.193*kW)",
        "1-0:22.7.0(00.000*kW)",
        "0-1:24.1.0(003)",
        "0-1:96.1.0(4730303339303031393336393930363139)",
        "0-1:24.2.1(261201143000W)(04212.871*m3)",
    ]
    if totals is not None:  # meters that send only total registers (e.g. Sweden)
        lines = [line for line in lines if not line.startswith(("1-0:1.8.", "1-0:2.8."))]
        lines[4:4] = [f"1-0:1.8.0({totals[0]}*kWh)", f"1-0:2.8.0({totals[1]}*kWh)"]
    lines = [line for line in lines if not any(line.startswith(o) for o in omit)]
    body = ("\r\n".join(lines) + "\r\n!").encode("ascii")
    return body + f"{crc16_arc(body):04X}\r\n".encode("ascii")


def corrupt(data: bytes) -> bytes:
    """The same telegram with one register digit changed (CRC no longer matches)."""
    index = data.index(b"1-0:1.8.1(") + len(b"1-0:1.8.1(")
    digit = data[index : index + 1]
    replacement = b"9" if digit != b"9" else b"8"
    return data[:index] + replacement + data[index + 1 :]
