"""A small PromQL tokenizer for tests: which metric names a query reads.

Enough of PromQL for dashboards and alert rules: strings, label matchers ``{...}``, range and
subquery selectors ``[...]``, grouping clauses (``by``/``without``/``on``/``ignoring``/
``group_left``/``group_right`` with their label lists), numbers, durations, operators,
keywords, function calls and Grafana's template variables (``$x``, ``${x}``, ``$__rate_interval``)
and query variables (``label_values(metric, label)``). An identifier called like a function
must be a PromQL function or aggregation (so a typo'd function fails loudly instead of being
taken for a metric); every other identifier is a metric name.
"""

from __future__ import annotations

import re

FUNCTIONS = frozenset(
    [
        "abs",
        "absent",
        "absent_over_time",
        "acos",
        "acosh",
        "asin",
        "asinh",
        "atan",
        "atanh",
        "avg_over_time",
        "ceil",
        "changes",
        "clamp",
        "clamp_max",
        "clamp_min",
        "cos",
        "cosh",
        "count_over_time",
        "day_of_month",
        "day_of_week",
        "day_of_year",
        "days_in_month",
        "deg",
        "delta",
        "deriv",
        "double_exponential_smoothing",
        "exp",
        "floor",
        "histogram_avg",
        "histogram_count",
        "histogram_fraction",
        "histogram_quantile",
        "histogram_stddev",
        "histogram_stdvar",
        "histogram_sum",
        "holt_winters",
        "hour",
        "idelta",
        "increase",
        "irate",
        "label_join",
        "label_replace",
        "last_over_time",
        "ln",
        "log10",
        "log2",
        "mad_over_time",
        "max_over_time",
        "min_over_time",
        "minute",
        "month",
        "pi",
        "predict_linear",
        "present_over_time",
        "quantile_over_time",
        "rad",
        "rate",
        "resets",
        "round",
        "scalar",
        "sgn",
        "sin",
        "sinh",
        "sort",
        "sort_by_label",
        "sort_by_label_desc",
        "sort_desc",
        "sqrt",
        "stddev_over_time",
        "stdvar_over_time",
        "sum_over_time",
        "tan",
        "tanh",
        "time",
        "timestamp",
        "vector",
        "year",
        "avg",
        "bottomk",
        "count",
        "count_values",
        "group",
        "limit_ratio",
        "limitk",
        "max",
        "min",
        "quantile",
        "stddev",
        "stdvar",
        "sum",
        "topk",
    ]
)
KEYWORDS = frozenset(
    ["by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "atan2", "inf", "nan"]
)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_BRACES = re.compile(r"\{[^{}]*\}")
_BRACKETS = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NUMBER = re.compile(r"(?<![\w:])(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)(?:ms|[smhdwy])*(?![\w:])")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(?P<query>.+?)\s*,\s*)?(?P<label>[A-Za-z_]\w*)\s*\)\s*$", re.DOTALL)


class PromQLError(ValueError):
    """The query calls something that is not a PromQL function."""


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` (PromQL, possibly with Grafana variables) selects."""
    text = _STRING.sub(" ", expr)  # first: strings may hold braces, brackets, anything
    text = _VARIABLE.sub(" ", text)
    text = _BRACES.sub(" ", text)
    text = _BRACKETS.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        word = match.group()
        called = text[match.end() :].lstrip().startswith("(")
        if called:
            if word not in FUNCTIONS:
                raise PromQLError(f"{word}(...) is not a PromQL function, in: {expr}")
        elif word not in KEYWORDS:
            names.add(word)
    return names


def variable_metric_names(query: str) -> set[str]:
    """The metric names of a Grafana Prometheus query variable: ``label_values(QUERY, label)``
    reads QUERY's series; ``label_values(label)`` reads none; anything else is PromQL."""
    match = _LABEL_VALUES.match(query)
    if match is not None:
        return metric_names(match["query"]) if match["query"] else set()
    return metric_names(query)
