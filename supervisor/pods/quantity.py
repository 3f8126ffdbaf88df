"""Kubernetes resource quantities (``64Mi``, ``1G``, ``500m``, ``0.5``) as exact integers."""
from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_QUANTITY = re.compile(r"^\+?(\d+(?:\.\d*)?|\.\d+)(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E))?$")
_SUFFIX = {
    None: Decimal(1), "m": Decimal("0.001"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_MAX = 2 ** 63 - 1  # podman/OCI take int64


def parse(value: object) -> Decimal:
    """The exact value of a quantity given as YAML int/float or string; ValueError if malformed."""
    if isinstance(value, bool):
        raise ValueError("expected a quantity such as 64Mi or 500m, got a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value}")
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise ValueError(f"expected a quantity such as 64Mi or 500m, got {type(value).__name__}")
    m = _QUANTITY.match(value)
    if not m:
        raise ValueError(f"{value!r} is not a quantity (examples: 128974848, 129e6, 129M, 123Mi, 500m)")
    try:
        number = Decimal(m.group(1))
        if m.group(2):
            number = number.scaleb(int(m.group(2)[1:]))
    except (InvalidOperation, ValueError, OverflowError) as e:
        raise ValueError(f"{value!r} is not a quantity: {e}") from None
    return number * _SUFFIX[m.group(3)]


def memory_bytes(value: object) -> int:
    """Bytes (rounded up, as Kubernetes does); at least 1."""
    q = parse(value)
    if q <= 0:
        raise ValueError(f"{value!r}: memory must be positive")
    if q > _MAX:
        raise ValueError(f"{value!r}: too large")
    return int(q.to_integral_value(rounding="ROUND_CEILING"))


def millicores(value: object) -> int:
    """CPU in thousandths of a core; at least 1m."""
    q = parse(value) * 1000
    if q <= 0:
        raise ValueError(f"{value!r}: CPU must be positive")
    if q != q.to_integral_value():
        raise ValueError(f"{value!r}: CPU has a precision of 1m (0.001 core)")
    if q > _MAX:
        raise ValueError(f"{value!r}: too large")
    return int(q)


def cpus(milli: int) -> str:
    """podman's --cpus value for millicores, exact and without trailing zeros (500 -> 0.5)."""
    whole, frac = divmod(milli, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".") if frac else str(whole)
