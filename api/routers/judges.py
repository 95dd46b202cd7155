"""``/v1/judges``: per LLM judge, what it said and how well it agrees with the users. Can I trust this judge?

Request and response::

    GET /v1/judges?app=support-bot&since=2026-11-23T00:00:00Z&until=2026-11-30T00:00:00Z
    -> {"data": [{"judge": "helpful", "app": "support-bot", "judged": 812, "unparsed": 3, "mean_score": 0.71,
                  "threshold": 0.5,
                  "agreement": {"thumbs": {"n": 230, "both_good": 150, "judge_good_user_bad": 31,
                                           "judge_bad_user_good": 12, "both_bad": 37,
                                           "observed_agreement": 0.81, "kappa": 0.51},
                                "regenerated": {…}, "edited": {…}}}],
        "count": 1}

From the judges' scores (``judge_<name>``, one per generation and judge) recorded in the window. The judge says
good when its score is at or above the judge's ``threshold`` (the config's, default 0.5). The users say good:
``thumbs``: a thumbs up (only the judged generations that got thumbs); ``regenerated``: not regenerated;
``edited``: no edit, or an edit ratio under the config's ``clusters.edit_ratio_threshold`` (0.5). Each table's
Cohen's kappa (:mod:`metrics.agreement`): 1 perfect, 0 chance, None when undefined.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from api.deps import DuckDB, EvalConfig, RequestTime
from api.queries import OUTCOME_METRICS, OUTCOMES
from api.routers.metrics import window
from metrics.agreement import Confusion
from metrics.analysis import analysis_settings
from metrics.judges import JudgeConfigError, parse_judges
from sinks.catalog import query

router = APIRouter(prefix="/v1", tags=["judges"])

_SQL = f"""
WITH j AS (
    SELECT generation_id, metric, any_value(value) AS score, any_value(app) AS app
    FROM scores
    WHERE starts_with(metric, 'judge_') AND ts >= $since AND ts < $until AND ($app IS NULL OR app = $app)
    GROUP BY generation_id, metric
), o AS (
    SELECT generation_id, {OUTCOMES}
    FROM scores
    WHERE generation_id IN (SELECT generation_id FROM j) AND list_contains($outcome_metrics, metric)
    GROUP BY generation_id
)
SELECT j.metric, j.app, j.score, o.thumbs_up, o.regenerated, o.edit_ratio
FROM j LEFT JOIN o USING (generation_id)
ORDER BY j.metric, j.app
"""


@router.get("/judges")
def get_judges(
    db: DuckDB,
    config: EvalConfig,
    app: Annotated[str | None, Query(max_length=256)] = None,
    since: Annotated[RequestTime | None, Query(description="Inclusive start, RFC 3339; default until - 7 days")] = None,
    until: Annotated[RequestTime | None, Query(description="Exclusive end, RFC 3339; default now")] = None,
) -> dict[str, Any]:
    start, end = window(since, until, timedelta(days=7))
    try:
        thresholds = {j.name: j.threshold for j in parse_judges(config)}
    except JudgeConfigError as exc:
        raise HTTPException(status_code=500, detail=f"evaluation config: {exc}") from None
    params = {"since": start, "until": end, "app": app, "outcome_metrics": list(OUTCOME_METRICS)}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for metric, row_app, score, thumbs_up, regenerated, edit_ratio in query(db, _SQL, params)[1]:
        unparsed = str(metric).endswith("_unparsed")
        name = str(metric)[len("judge_") :].removesuffix("_unparsed") if unparsed else str(metric)[len("judge_") :]
        g = groups.setdefault((name, str(row_app)), {
            "judge": name, "app": row_app, "judged": 0, "unparsed": 0, "scores": [],
            "threshold": thresholds.get(name, 0.5), "thumbs": Confusion(), "regenerated": Confusion(),
            "edited": Confusion(),
        })  # fmt: skip
        if unparsed:
            g["unparsed"] += 1
            continue
        edit_threshold = analysis_settings(config, str(row_app)).clusters.edit_ratio_threshold
        good = float(score) >= g["threshold"]  # type: ignore[arg-type]
        g["judged"] += 1
        g["scores"].append(float(score))  # type: ignore[arg-type]
        if thumbs_up is not None:
            g["thumbs"] = g["thumbs"].update(good, thumbs_up == 1)
        g["regenerated"] = g["regenerated"].update(good, not regenerated)
        g["edited"] = g["edited"].update(good, edit_ratio is None or edit_ratio < edit_threshold)  # type: ignore[operator]
    data = []
    for g in groups.values():
        scores = g.pop("scores")
        g["mean_score"] = sum(scores) / len(scores) if scores else None
        g["agreement"] = {signal: g.pop(signal).get() for signal in ("thumbs", "regenerated", "edited")}
        data.append(g)
    return {"data": data, "count": len(data)}
