"""Sample master data: small, realistic and deterministic (the same seed and day give the same
events, ids included, so loading it twice changes nothing downstream).

Two legal entities, four facilities with locations (par and reorder levels), 20 suppliers,
200 items with valid GTIN-14s (med-surg, pharmacy, controlled substances, implants, lab,
capital; units with conversions; contract prices), cost centers with budgets for the current
and the next period (one grant-funded), and approvers with roles, limits and one delegation.
"""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from typing import Any

from supplybus.events.domain_checks import gtin_check_digit
from supplybus.events.envelope import deterministic_id, new_envelope

Record = dict[str, Any]

ENTITIES = {"ENT-EAST": "Eastern Health", "ENT-WEST": "Western Health"}
FACILITIES = (  # id, entity, name, kind, time zone
    ("FAC-E1", "ENT-EAST", "East General Hospital", "HOSPITAL", "America/New_York"),
    ("FAC-E2", "ENT-EAST", "East Outpatient Clinic", "CLINIC", "America/New_York"),
    ("FAC-W1", "ENT-WEST", "West Medical Center", "HOSPITAL", "America/Los_Angeles"),
    ("FAC-W2", "ENT-WEST", "West Distribution Center", "WAREHOUSE", "America/Los_Angeles"),
)
#: category -> (how many items, base unit, (unit, factor) packs, lot controlled, EA price range)
CATEGORIES: dict[str, tuple[int, str, tuple[tuple[str, str], ...], bool, tuple[int, int]]] = {
    "MED_SURG": (100, "EA", (("BX", "10"), ("CS", "100")), False, (1, 40)),
    "PHARMACY": (30, "EA", (("BX", "25"), ("CS", "250")), True, (2, 120)),
    "CONTROLLED_SUBSTANCE": (10, "VL", (("BX", "10"),), True, (5, 60)),
    "IMPLANT": (20, "EA", (), True, (800, 12000)),
    "LAB": (30, "EA", (("PK", "50"), ("CS", "500")), False, (1, 15)),
    "CAPITAL": (10, "EA", (), False, (30000, 400000)),
}
NOUNS = {
    "MED_SURG": ("Exam glove nitrile", "Gauze sponge 4x4", "IV start kit", "Suture 3-0 nylon"),
    "PHARMACY": ("Cefazolin 1 g", "Ondansetron 4 mg", "Heparin 5000 U", "Saline flush 10 mL"),
    "CONTROLLED_SUBSTANCE": ("Morphine 10 mg/mL", "Fentanyl 50 mcg/mL", "Hydromorphone 2 mg"),
    "IMPLANT": ("Knee tibial tray", "Hip femoral stem", "Cardiac stent 3.0", "Bone screw 4.5"),
    "LAB": ("Blood culture bottle", "Specimen cup 120 mL", "Pipette tip 200 uL", "Slide"),
    "CAPITAL": ("Infusion pump", "Patient monitor", "Anesthesia machine", "Ultrasound system"),
}


def period(day: dt.date, months_ahead: int = 0) -> str:
    """The budget period of ``day`` (YYYY-MM), or of a later month."""
    month = day.year * 12 + day.month - 1 + months_ahead
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def sample_masterdata(seed: int = 0, today: dt.date | None = None) -> list[Record]:
    """Every sample record, facilities first and approvers last (publishable as they are)."""
    day = today or dt.datetime.now(dt.UTC).date()
    return _Sample(seed, day).records()


class _Sample:
    def __init__(self, seed: int, day: dt.date) -> None:
        self.rng = random.Random(f"masterdata:{seed}")
        self.seed, self.day = seed, day
        self.at = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)

    def envelope(self, event_type: str, key: str, entity: str, facility: str | None) -> Record:
        return new_envelope(
            event_type,
            source_system="supplybus.sample",
            entity_id=entity,
            facility_id=facility,
            actor="sample-loader",
            occurred_at=self.at,
            event_id=deterministic_id("masterdata-sample", self.seed, self.day, event_type, key),
        )

    def records(self) -> list[Record]:
        facilities = [self.facility(*f) for f in FACILITIES]
        suppliers = [self.supplier(n) for n in range(1, 21)]
        items = self.items(suppliers)
        locations = [loc for f in FACILITIES for loc in self.locations(f[0], f[1], items)]
        cost_centers = [cc for f in FACILITIES for cc in self.cost_centers(f[0], f[1])]
        return [*facilities, *suppliers, *items, *locations, *cost_centers, *self.approvers()]

    def facility(self, fid: str, entity: str, name: str, kind: str, tz: str) -> Record:
        return {
            "envelope": self.envelope("FacilityUpserted", fid, entity, fid),
            "facility_id": fid,
            "name": name,
            "owning_entity_id": entity,
            "kind": kind,
            "timezone": tz,
        }

    def supplier(self, n: int) -> Record:
        sid = f"SUP-{n:03d}"
        status = {19: "INACTIVE", 20: "BLOCKED"}.get(n, "ACTIVE")
        entities = sorted(ENTITIES) if n % 3 else [sorted(ENTITIES)[n % 2]]
        return {
            "envelope": self.envelope("SupplierUpserted", sid, entities[0], None),
            "supplier_id": sid,
            "name": f"{self.rng.choice(('Acme', 'Medline', 'Cardinal', 'Owens', 'Apex'))}"
            f" Supply {n:02d}",
            "status": status,
            "tax_id": f"{self.rng.randint(10, 99)}-{self.rng.randint(1000000, 9999999)}",
            "currency": "USD",
            "entity_ids": entities,
        }

    def items(self, suppliers: list[Record]) -> list[Record]:
        active = [s["supplier_id"] for s in suppliers if s["status"] == "ACTIVE"]
        found: list[Record] = []
        for category, (count, base, packs, lots, (low, high)) in CATEGORIES.items():
            for _ in range(count):
                found.append(
                    self.item(len(found) + 1, category, base, packs, lots, low, high, active)
                )
        return found

    def item(
        self, n: int, category: str, base: str, packs: tuple[tuple[str, str], ...], lots: bool,
        low: int, high: int, suppliers: list[str],
    ) -> Record:  # fmt: skip
        iid = f"ITEM-{n:04d}"
        body = f"1{self.seed % 1000:03d}0614{n:05d}"  # GS1 company prefix 0614, item reference
        unit_price = Decimal(self.rng.randint(low * 100, high * 100)) / 100
        prices = []
        for supplier in sorted(self.rng.sample(suppliers, 2 if n % 4 else 1)):
            each = unit_price * Decimal(self.rng.randint(95, 105)) / 100
            for uom, factor in (("_base", "1"), *packs[-1:]):
                amount = each * Decimal(factor) * Decimal("0.97" if uom != "_base" else 1)
                prices.append({
                    "supplier_id": supplier,
                    "uom": base if uom == "_base" else uom,
                    "price": {"amount": amount.quantize(Decimal("0.0001")), "currency": "USD"},
                    "valid_from": dt.date(self.day.year, 1, 1),
                    "valid_to": None if n % 5 else dt.date(self.day.year, 12, 31),
                })  # fmt: skip
        return {
            "envelope": self.envelope("ItemUpserted", iid, "ENT-EAST", None),
            "item_id": iid,
            "gtin": body + gtin_check_digit(body),
            "description": f"{self.rng.choice(NOUNS[category])} #{n}",
            "category": category,
            "base_uom": base,
            "uom_conversions": [{"uom": u, "factor": Decimal(f).quantize(Decimal("0.001"))}
                                for u, f in (( base, "1"), *packs)],
            "lot_controlled": lots,
            "orderable": n % 50 != 0,  # a few items are no longer orderable
            "contract_prices": prices,
        }  # fmt: skip

    def locations(self, facility: str, entity: str, items: list[Record]) -> list[Record]:
        kinds = ("STOREROOM", "PHARMACY") if facility.endswith("1") else ("STOREROOM", "PAR_AREA")
        found = []
        for i, kind in enumerate(kinds, 1):
            lid = f"LOC-{facility[4:]}-{i}"
            wanted = [
                it for it in items if (it["category"] in ("PHARMACY", "CONTROLLED_SUBSTANCE"))
                == (kind == "PHARMACY") and it["category"] != "CAPITAL"
            ]  # fmt: skip
            levels = []
            for it in sorted(self.rng.sample(wanted, 12), key=lambda r: r["item_id"]):
                par = Decimal(self.rng.randint(2, 40) * 10)
                unit = it["base_uom"]
                levels.append({
                    "item_id": it["item_id"],
                    "par": _qty(par, unit),
                    "reorder_point": _qty(par * Decimal("0.3"), unit),
                    "reorder_quantity": _qty(par * Decimal("0.7"), unit),
                })  # fmt: skip
            found.append({
                "envelope": self.envelope("LocationUpserted", lid, entity, facility),
                "location_id": lid,
                "location_facility_id": facility,
                "name": f"{facility} {kind.replace('_', ' ').lower()}",
                "kind": kind,
                "levels": levels,
            })  # fmt: skip
        return found

    def cost_centers(self, facility: str, entity: str) -> list[Record]:
        found = []
        for dept, base in (("SURG", 400_000), ("PHARM", 250_000), ("RES", 60_000)):
            cid = f"CC-{facility[4:]}-{dept}"
            amount = Decimal(base * self.rng.randint(80, 120) // 100)
            found.append({
                "envelope": self.envelope("CostCenterUpserted", cid, entity, facility),
                "cost_center_id": cid,
                "owning_entity_id": entity,
                "facility_id": facility,
                "name": f"{facility} {dept.lower()}",
                "status": "CLOSED" if cid == "CC-W2-RES" else "OPEN",
                "grant_funded": cid == "CC-E1-RES",
                "budgets": [
                    {"period": period(self.day, ahead), "amount": _usd(amount)}
                    for ahead in (0, 1)
                ],
            })  # fmt: skip
        return found

    def approvers(self) -> list[Record]:
        ladder = (  # suffix, name, roles, limit: up to the next rung of the spend ladder
            ("MGR", "Manager", ["MANAGER"], 25_000),
            ("DIR", "Director", ["DIRECTOR"], 100_000),
            ("DIR2", "Director", ["DIRECTOR"], 100_000),
            ("VP", "Vice President", ["VP"], 250_000),
            ("CFO", "Chief Financial Officer", ["CFO", "FINANCE"], 1_000_000),
            ("CAP", "Capital Committee", ["CAPITAL_COMMITTEE"], 5_000_000),
            ("PHARM", "Pharmacy Director", ["PHARMACY"], 50_000),
            ("GRANTS", "Grants Officer", ["GRANTS_OFFICE"], 100_000),
            ("SRC", "Sourcing Lead", ["SOURCING"], 250_000),
            ("FIN", "Finance Controller", ["FINANCE"], 250_000),
        )
        found = []
        for entity in sorted(ENTITIES):
            short = entity[4:]
            for suffix, title, roles, limit in ladder:
                aid = f"APR-{short}-{suffix}"
                away = entity == "ENT-EAST" and suffix == "DIR"
                found.append({
                    "envelope": self.envelope("ApproverUpserted", aid, entity, None),
                    "approver_id": aid,
                    "name": f"{title} {short.title()}",
                    "owning_entity_id": entity,
                    "roles": roles,
                    "authority_limit": _usd(Decimal(limit)),
                    "cost_center_ids": [],
                    "facility_ids": [],
                    "active": True,
                    "delegations": [{
                        "delegate_id": f"APR-{short}-DIR2",
                        "from_date": self.day,
                        "to_date": self.day + dt.timedelta(days=14),
                    }] if away else [],
                })  # fmt: skip
        return found


def _qty(value: Decimal, uom: str) -> Record:
    return {"value": value.quantize(Decimal("0.001")), "uom": uom}


def _usd(amount: Decimal) -> Record:
    return {"amount": amount.quantize(Decimal("0.0001")), "currency": "USD"}
