"""Turn simulated careers into agency events: one row per person named in one agency event.

The rows here are still internal (person index, float times, canonical event types and
roles); :mod:`synth.extracts` adds the identifiers, noise and each agency's formats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from synth.offending import Careers

# Offence codes (NC statutes) by what happened.
CODE_ASSAULT_ON_FEMALE = "14-33(C)(2)"
CODE_SIMPLE_ASSAULT = "14-33(A)"
CODE_STRANGULATION = "14-32.4(B)"
CODE_AWDW = "14-32(C)"
CODE_THREATS = "14-277.1"
CODE_ORDER_VIOLATION = "50B-4.1(A)"
CODE_CALL = "CFS-DOMESTIC"
CODE_NOTIFICATION = "IPVI-NOTICE"
CODE_PROBATION_VIOLATION = "15A-1344"
NON_IPV_CODES = np.array(["14-33(A)", "14-32(A)", "14-87", "14-34.1"], dtype=object)
DISPOSITIONS = np.array(["GUILTY", "GUILTY PLEA", "DISMISSED", "NOT GUILTY"], dtype=object)

FLAG_COLUMNS = ("weapon", "strangulation", "injury", "threat_to_kill", "children_present")


class _Rows:
    """Accumulates row blocks column-wise, then concatenates them once."""

    def __init__(self) -> None:
        self.blocks: list[dict[str, np.ndarray]] = []
        self.next_event = 0
        self.next_row = 0

    def events(self, count: int) -> np.ndarray:
        keys = np.arange(self.next_event, self.next_event + count)
        self.next_event += count
        return keys

    def add(self, agency: str, event_type: str, role: str, **cols) -> np.ndarray:
        count = len(cols["person"])
        rows = np.arange(self.next_row, self.next_row + count)
        self.next_row += count
        block = {
            "agency": np.full(count, agency, dtype=object),
            "event_type": np.full(count, event_type, dtype=object),
            "role": np.full(count, role, dtype=object),
            "row_key": rows,
        }
        for name, values in cols.items():
            values = np.asarray(values)
            block[name] = np.broadcast_to(values, (count,)) if values.ndim == 0 else values
        self.blocks.append(block)
        return rows

    def frame(self) -> pd.DataFrame:
        defaults = {
            "victim_row": -1,
            "case": -1,
            "offence": -1,
            "ipv": True,
            "code": "",
            "disposition": "",
            **{flag: -1 for flag in FLAG_COLUMNS},
        }
        columns = sorted({key for block in self.blocks for key in block} | set(defaults))
        data = {}
        for col in columns:
            parts = []
            for block in self.blocks:
                if col in block:
                    parts.append(np.asarray(block[col]))
                else:
                    parts.append(np.full(len(block["row_key"]), defaults[col]))
            data[col] = np.concatenate(parts)
        return pd.DataFrame(data)


def _ipv_code(off: pd.DataFrame, female_offender: np.ndarray) -> np.ndarray:
    return np.select(
        [
            off["violation"].to_numpy() & ~off["strang"].to_numpy() & ~off["weapon"].to_numpy(),
            off["strang"].to_numpy(),
            off["weapon"].to_numpy(),
            off["threat"].to_numpy() & ~off["injury"].to_numpy(),
            female_offender,
        ],
        [CODE_ORDER_VIOLATION, CODE_STRANGULATION, CODE_AWDW, CODE_THREATS, CODE_SIMPLE_ASSAULT],
        CODE_ASSAULT_ON_FEMALE,
    )


def build_rows(
    careers: Careers,
    *,
    victim_of: np.ndarray,
    female: np.ndarray,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """All agency rows of all offences, before identifiers and formats.

    Parameters
    ----------
    careers : the simulated offences and prior non-IPV violence
    victim_of : global person index of each offence's victim (aligned with offences)
    female : bool per global person index
    rng : random generator (for minute offsets of entries)

    Returns
    -------
    DataFrame with one row per mention: agency, event_type, role, person, time (when it
    happened), rec (when the agency recorded it), event_key, row_key, victim_row, case,
    offence (the offence index, -1 for other events), ipv, flags, code, disposition.
    """
    off = careers.offences
    n_off = len(off)
    out = _Rows()
    offender = off["offender"].to_numpy()
    victim = victim_of
    t = off["time"].to_numpy()
    oid = np.arange(n_off)
    case = oid  # case numbers 0..n_off-1 for IPV offences; non-IPV cases follow
    code = _ipv_code(off, female[offender])
    flag_values = {
        "weapon": off["weapon"].to_numpy().astype(np.int8),
        "strangulation": off["strang"].to_numpy().astype(np.int8),
        "injury": off["injury"].to_numpy().astype(np.int8),
        "threat_to_kill": off["threat"].to_numpy().astype(np.int8),
        "children_present": off["children"].to_numpy().astype(np.int8),
    }

    def minutes(count: int, hi: float = 0.05) -> np.ndarray:
        return np.round(rng.uniform(0.001, hi, count) * 1440) / 1440

    # Police incident report: offender (suspect) and victim rows share one event.
    ev = out.events(n_off)
    inc_rec = off["inc_rec"].to_numpy()
    vrows = out.add(
        "police",
        "incident",
        "victim",
        person=victim,
        time=t,
        rec=inc_rec,
        event_key=ev,
        case=case,
        offence=oid,
        code=code,
        **flag_values,
    )
    out.add(
        "police",
        "incident",
        "suspect",
        person=offender,
        time=t,
        rec=inc_rec,
        event_key=ev,
        case=case,
        offence=oid,
        code=code,
        victim_row=vrows,
        **flag_values,
    )
    # Calls for service, entered at once.
    m = off["cfs"].to_numpy()
    ev = out.events(m.sum())
    rec = t[m] + minutes(m.sum())
    vrows = out.add(
        "police",
        "call",
        "victim",
        person=victim[m],
        time=t[m],
        rec=rec,
        event_key=ev,
        case=case[m],
        offence=oid[m],
        code=CODE_CALL,
    )
    out.add(
        "police",
        "call",
        "suspect",
        person=offender[m],
        time=t[m],
        rec=rec,
        event_key=ev,
        case=case[m],
        offence=oid[m],
        code=CODE_CALL,
        victim_row=vrows,
    )
    # Arrests (and dual arrests: the victim arrested in the same event).
    m = off["arrested"].to_numpy()
    ev = out.events(m.sum())
    at = off["arrest_time"].to_numpy()
    rec = at[m] + minutes(m.sum())
    out.add(
        "police",
        "arrest",
        "arrestee",
        person=offender[m],
        time=at[m],
        rec=rec,
        event_key=ev,
        case=case[m],
        offence=oid[m],
        code=code[m],
    )
    d = off["dual"].to_numpy()[m]
    out.add(
        "police",
        "arrest",
        "arrestee",
        person=victim[m][d],
        time=at[m][d],
        rec=rec[d],
        event_key=ev[d],
        case=case[m][d],
        offence=oid[m][d],
        code=CODE_SIMPLE_ASSAULT,
    )
    # Jail: booking at arrest, release.
    book = at[m] + 0.02
    rel = off["release"].to_numpy()[m]
    for kind, when in (("custody_start", book), ("custody_end", rel)):
        out.add(
            "jail",
            kind,
            "arrestee",
            person=offender[m],
            time=when,
            rec=when + minutes(m.sum()),
            event_key=out.events(m.sum()),
            case=case[m],
            offence=oid[m],
            code=code[m],
        )
    # Court: charge (pending), disposition months later.
    m = off["charged"].to_numpy()
    cd = off["charge_day"].to_numpy()[m]
    dd = off["disp_day"].to_numpy()[m]
    out.add(
        "court",
        "charge",
        "defendant",
        person=offender[m],
        time=np.floor(t[m]),
        rec=cd,
        event_key=out.events(m.sum()),
        case=case[m],
        offence=oid[m],
        code=code[m],
        disposition="PENDING",
    )
    out.add(
        "court",
        "disposition",
        "defendant",
        person=offender[m],
        time=np.floor(t[m]),
        rec=dd,
        event_key=out.events(m.sum()),
        case=case[m],
        offence=oid[m],
        code=code[m],
        disposition=DISPOSITIONS[off["outcome"].to_numpy()[m]],
    )
    # Jail sentence after conviction.
    m = off["sentenced"].to_numpy()
    for kind, col in (("custody_start", "sent_start"), ("custody_end", "sent_end")):
        when = off[col].to_numpy()[m]
        out.add(
            "jail",
            kind,
            "arrestee",
            person=offender[m],
            time=when,
            rec=when + minutes(m.sum()),
            event_key=out.events(m.sum()),
            case=case[m],
            code=code[m],
        )
    # Probation start and violations (violations keyed the same day).
    m = off["probation"].to_numpy()
    pday = off["prob_day"].to_numpy()[m]
    out.add(
        "probation",
        "probation_start",
        "probationer",
        person=offender[m],
        time=pday,
        rec=pday + rng.integers(0, 4, m.sum()),
        event_key=out.events(m.sum()),
        case=case[m],
    )
    m = off["pv"].to_numpy()
    vday = off["pv_day"].to_numpy()[m]
    out.add(
        "probation",
        "probation_violation",
        "probationer",
        person=offender[m],
        time=vday,
        rec=vday,
        event_key=out.events(m.sum()),
        case=case[m],
        code=CODE_PROBATION_VIOLATION,
    )
    m = off["pv_jail"].to_numpy()
    for kind, when in (
        ("custody_start", off["pv_day"].to_numpy()[m] + 0.6),
        ("custody_end", off["pv_jail_end"].to_numpy()[m]),
    ):
        out.add(
            "jail",
            kind,
            "arrestee",
            person=offender[m],
            time=when,
            rec=when + minutes(m.sum()),
            event_key=out.events(m.sum()),
            case=case[m],
            code=CODE_PROBATION_VIOLATION,
        )
    # Protective orders: respondent and petitioner (victim) rows; violations likewise.
    for flag, day_col, rec_col, etype, offence_of in (
        ("order", "order_day", "order_entered", "protective_order", None),
        ("violation", None, "viol_entered", "order_violation", oid),
    ):
        m = off[flag].to_numpy()
        day = off[day_col].to_numpy()[m] if day_col else np.floor(t[m])
        rec = off[rec_col].to_numpy()[m]
        ev = out.events(m.sum())
        extra = {"offence": offence_of[m]} if offence_of is not None else {}
        prow = out.add(
            "protective_orders",
            etype,
            "victim",
            person=victim[m],
            time=day,
            rec=rec,
            event_key=ev,
            case=case[m],
            code=CODE_ORDER_VIOLATION if extra else "",
            **extra,
        )
        out.add(
            "protective_orders",
            etype,
            "respondent",
            person=offender[m],
            time=day,
            rec=rec,
            event_key=ev,
            case=case[m],
            victim_row=prow,
            code=CODE_ORDER_VIOLATION if extra else "",
            **extra,
        )
    # Notifications (tier response), delivered before the decision date.
    m = off["notified"].to_numpy()
    nt = off["notif_time"].to_numpy()[m]
    out.add(
        "police",
        "notification",
        "suspect",
        person=offender[m],
        time=nt,
        rec=nt + minutes(m.sum()),
        event_key=out.events(m.sum()),
        case=case[m],
        code=CODE_NOTIFICATION,
    )
    # Prior non-IPV violence: arrest, booking, release, charge, disposition.
    v = careers.violence
    nv = len(v)
    vcase = n_off + np.arange(nv)
    who = v["offender"].to_numpy()
    vcode = NON_IPV_CODES[rng.integers(0, len(NON_IPV_CODES), nv)]
    vt = v["time"].to_numpy()
    varr = v["arrest_time"].to_numpy()
    out.add(
        "police",
        "arrest",
        "arrestee",
        person=who,
        time=varr,
        rec=varr + minutes(nv),
        event_key=out.events(nv),
        case=vcase,
        code=vcode,
        ipv=False,
        weapon=v["weapon"].to_numpy().astype(np.int8),
    )
    for kind, when in (("custody_start", varr + 0.02), ("custody_end", v["release"].to_numpy())):
        out.add(
            "jail",
            kind,
            "arrestee",
            person=who,
            time=when,
            rec=when + minutes(nv),
            event_key=out.events(nv),
            case=vcase,
            code=vcode,
            ipv=False,
        )
    out.add(
        "court",
        "charge",
        "defendant",
        person=who,
        time=np.floor(vt),
        rec=v["charge_day"].to_numpy(),
        event_key=out.events(nv),
        case=vcase,
        code=vcode,
        ipv=False,
        disposition="PENDING",
    )
    out.add(
        "court",
        "disposition",
        "defendant",
        person=who,
        time=np.floor(vt),
        rec=v["disp_day"].to_numpy(),
        event_key=out.events(nv),
        case=vcase,
        code=vcode,
        ipv=False,
        disposition=DISPOSITIONS[v["outcome"].to_numpy()],
    )
    return out.frame()
