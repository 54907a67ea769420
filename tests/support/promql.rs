//! A small PromQL evaluator for testing alerting rules without Prometheus
//! (promtool is not available here): `promql-parser` parses, this file
//! evaluates the subset the chart's rules use, with Prometheus's semantics —
//! instant selectors with the 5-minute lookback, range selectors,
//! `increase()` with Prometheus's extrapolation (so a counter's first sample
//! counts for nothing, as in Prometheus), `time()`, `absent()`,
//! `sum`/`max`/`min` with `by`, arithmetic and comparisons between scalars
//! and vectors, one-to-one vector matching with `on`/`ignoring`, and `or`.
//! Anything else panics, so a rule that leaves the subset fails its test
//! instead of being judged by a guess. An alert fires for the label sets its
//! expression returns at every evaluation over its `for` period.

#![allow(dead_code)]

use std::collections::BTreeMap;

use promql_parser::label::{Labels as Names, METRIC_NAME};
use promql_parser::parser::ast::{BinaryExpr, LabelModifier, VectorMatchCardinality};
use promql_parser::parser::{self, Expr};

pub type Labels = BTreeMap<String, String>;

/// Prometheus's default lookback of an instant selector.
const LOOKBACK: f64 = 300.0;
/// How often the rule is evaluated while its `for` runs.
const EVALUATION_INTERVAL: f64 = 30.0;

/// Samples, in seconds since the epoch; the series of a fake TSDB.
#[derive(Clone, Debug, Default)]
pub struct Db {
    series: Vec<(Labels, Vec<(f64, f64)>)>,
}

impl Db {
    /// Adds a series named `name` with `labels`: `value(t)` every `step`
    /// seconds for `t` in `[from, to]` (a scrape of it).
    pub fn scrape(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        (from, to): (f64, f64),
        step: f64,
        value: impl Fn(f64) -> f64,
    ) {
        let mut l: Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.insert(METRIC_NAME.to_string(), name.to_string());
        let mut samples = Vec::new();
        let mut t = from;
        while t <= to {
            samples.push((t, value(t)));
            t += step;
        }
        self.series.push((l, samples));
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar(f64),
    Vector(Vec<(Labels, f64)>),
    Matrix(Vec<(Labels, Vec<(f64, f64)>)>),
}

impl Value {
    fn vector(self) -> Vec<(Labels, f64)> {
        match self {
            Value::Vector(v) => v,
            other => panic!("expected an instant vector, got {other:?}"),
        }
    }
}

fn matches(selector: &parser::VectorSelector, labels: &Labels) -> bool {
    assert!(
        selector.offset.is_none() && selector.at.is_none(),
        "offset and @ are not supported"
    );
    assert!(
        selector.matchers.or_matchers.is_empty(),
        "`or` in a selector is not supported"
    );
    let name_ok = selector
        .name
        .as_ref()
        .is_none_or(|n| labels.get(METRIC_NAME) == Some(n));
    name_ok
        && selector
            .matchers
            .matchers
            .iter()
            .all(|m| m.is_match(labels.get(&m.name).map(String::as_str).unwrap_or_default()))
}

fn without_name(mut l: Labels) -> Labels {
    l.remove(METRIC_NAME);
    l
}

/// The labels vector matching compares: `on` keeps only those, `ignoring`
/// drops those, neither drops only the name.
fn signature(l: &Labels, matching: Option<&LabelModifier>) -> Labels {
    let l = without_name(l.clone());
    match matching {
        None => l,
        Some(LabelModifier::Include(names)) => l
            .into_iter()
            .filter(|(k, _)| names.labels.contains(k))
            .collect(),
        Some(LabelModifier::Exclude(names)) => l
            .into_iter()
            .filter(|(k, _)| !names.labels.contains(k))
            .collect(),
    }
}

fn arithmetic(op: &str, a: f64, b: f64) -> f64 {
    match op {
        "+" => a + b,
        "-" => a - b,
        "*" => a * b,
        "/" => a / b,
        _ => panic!("operator {op} is not supported"),
    }
}

fn comparison(op: &str, a: f64, b: f64) -> Option<bool> {
    Some(match op {
        ">" => a > b,
        "<" => a < b,
        ">=" => a >= b,
        "<=" => a <= b,
        "==" => a == b,
        "!=" => a != b,
        _ => return None,
    })
}

/// Prometheus's `extrapolatedRate` for `increase()` of a counter.
fn increase(samples: &[(f64, f64)], range_start: f64, range_end: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    let mut result = last.1 - first.1;
    for w in samples.windows(2) {
        if w[1].1 < w[0].1 {
            result += w[0].1; // a counter reset
        }
    }
    let mut to_start = first.0 - range_start;
    let to_end = range_end - last.0;
    let sampled = last.0 - first.0;
    let average = sampled / (samples.len() - 1) as f64;
    if result > 0.0 && first.1 >= 0.0 {
        // A counter does not extrapolate below zero.
        let to_zero = sampled * (first.1 / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    Some(result * interval / sampled)
}

/// Evaluates `expr` at instant `t`.
pub fn eval(expr: &Expr, db: &Db, t: f64) -> Value {
    match expr {
        Expr::NumberLiteral(n) => Value::Scalar(n.val),
        Expr::Paren(p) => eval(&p.expr, db, t),
        Expr::VectorSelector(vs) => Value::Vector(
            db.series
                .iter()
                .filter(|(l, _)| matches(vs, l))
                .filter_map(|(l, samples)| {
                    samples
                        .iter()
                        .rev()
                        .find(|(ts, _)| *ts <= t && *ts > t - LOOKBACK)
                        .map(|(_, v)| (l.clone(), *v))
                })
                .collect(),
        ),
        Expr::MatrixSelector(ms) => {
            let range = ms.range.as_secs_f64();
            Value::Matrix(
                db.series
                    .iter()
                    .filter(|(l, _)| matches(&ms.vs, l))
                    .map(|(l, samples)| {
                        let window: Vec<(f64, f64)> = samples
                            .iter()
                            .copied()
                            .filter(|(ts, _)| *ts <= t && *ts > t - range)
                            .collect();
                        (l.clone(), window)
                    })
                    .filter(|(_, w)| !w.is_empty())
                    .collect(),
            )
        }
        Expr::Call(call) => {
            let args = &call.args.args;
            match call.func.name {
                "time" => Value::Scalar(t),
                "absent" => {
                    if !eval(&args[0], db, t).vector().is_empty() {
                        return Value::Vector(Vec::new());
                    }
                    // The labels of the selector's equality matchers, if it is one.
                    let labels = match args[0].as_ref() {
                        Expr::VectorSelector(vs) => vs
                            .matchers
                            .matchers
                            .iter()
                            .filter(|m| {
                                m.name != METRIC_NAME
                                    && matches!(m.op, promql_parser::label::MatchOp::Equal)
                            })
                            .map(|m| (m.name.clone(), m.value.clone()))
                            .collect(),
                        _ => Labels::new(),
                    };
                    Value::Vector(vec![(labels, 1.0)])
                }
                "increase" => {
                    let Expr::MatrixSelector(ms) = args[0].as_ref() else {
                        panic!("increase() of a subquery is not supported");
                    };
                    let range = ms.range.as_secs_f64();
                    let Value::Matrix(m) = eval(&args[0], db, t) else {
                        unreachable!()
                    };
                    Value::Vector(
                        m.into_iter()
                            .filter_map(|(l, s)| {
                                increase(&s, t - range, t).map(|v| (without_name(l), v))
                            })
                            .collect(),
                    )
                }
                other => panic!("function {other}() is not supported"),
            }
        }
        Expr::Aggregate(agg) => {
            assert!(
                agg.param.is_none(),
                "aggregation parameters are not supported"
            );
            let by: Option<&Names> = match &agg.modifier {
                None => None,
                Some(LabelModifier::Include(names)) => Some(names),
                Some(LabelModifier::Exclude(_)) => panic!("`without` is not supported"),
            };
            let mut groups: BTreeMap<Labels, Vec<f64>> = BTreeMap::new();
            for (l, v) in eval(&agg.expr, db, t).vector() {
                let key = l
                    .into_iter()
                    .filter(|(k, _)| by.is_some_and(|b| b.labels.contains(k)))
                    .collect();
                groups.entry(key).or_default().push(v);
            }
            let op = agg.op.to_string();
            Value::Vector(
                groups
                    .into_iter()
                    .map(|(l, vs)| {
                        let v = match op.as_str() {
                            "sum" => vs.iter().sum(),
                            "max" => vs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                            "min" => vs.iter().copied().fold(f64::INFINITY, f64::min),
                            other => panic!("aggregation {other} is not supported"),
                        };
                        (l, v)
                    })
                    .collect(),
            )
        }
        Expr::Binary(b) => binary(b, db, t),
        other => panic!("{other} is not supported"),
    }
}

fn binary(b: &BinaryExpr, db: &Db, t: f64) -> Value {
    let op = b.op.to_string();
    let modifier = b.modifier.as_ref();
    assert!(
        modifier.is_none_or(|m| !m.return_bool),
        "`bool` is not supported"
    );
    let matching = modifier.and_then(|m| m.matching.as_ref());
    let (lhs, rhs) = (eval(&b.lhs, db, t), eval(&b.rhs, db, t));
    if op == "or" {
        let (lhs, rhs) = (lhs.vector(), rhs.vector());
        let seen: Vec<Labels> = lhs.iter().map(|(l, _)| signature(l, matching)).collect();
        let mut out = lhs;
        out.extend(
            rhs.into_iter()
                .filter(|(l, _)| !seen.contains(&signature(l, matching))),
        );
        return Value::Vector(out);
    }
    match (lhs, rhs) {
        (Value::Scalar(a), Value::Scalar(c)) => {
            assert!(
                comparison(&op, a, c).is_none(),
                "scalar comparison needs bool"
            );
            Value::Scalar(arithmetic(&op, a, c))
        }
        (Value::Vector(v), Value::Scalar(s)) => Value::Vector(vector_scalar(&op, v, s, false)),
        (Value::Scalar(s), Value::Vector(v)) => Value::Vector(vector_scalar(&op, v, s, true)),
        (Value::Vector(l), Value::Vector(r)) => {
            if let Some(m) = modifier {
                assert!(
                    matches!(m.card, VectorMatchCardinality::OneToOne),
                    "group_left/group_right are not supported"
                );
            }
            let mut out = Vec::new();
            for (ll, lv) in l {
                let sig = signature(&ll, matching);
                let partners: Vec<f64> = r
                    .iter()
                    .filter(|(rl, _)| signature(rl, matching) == sig)
                    .map(|(_, v)| *v)
                    .collect();
                assert!(partners.len() <= 1, "many-to-one matching for {sig:?}");
                let Some(&rv) = partners.first() else {
                    continue;
                };
                match comparison(&op, lv, rv) {
                    Some(true) => out.push((ll, lv)),
                    Some(false) => {}
                    None => {
                        let labels = match matching {
                            Some(LabelModifier::Include(_)) => sig,
                            _ => signature(&ll, matching),
                        };
                        out.push((labels, arithmetic(&op, lv, rv)));
                    }
                }
            }
            Value::Vector(out)
        }
        other => panic!("{op} between {other:?} is not supported"),
    }
}

/// A vector and a scalar; `scalar_first` when the scalar is on the left.
fn vector_scalar(
    op: &str,
    v: Vec<(Labels, f64)>,
    s: f64,
    scalar_first: bool,
) -> Vec<(Labels, f64)> {
    v.into_iter()
        .filter_map(|(l, x)| {
            let (a, b) = if scalar_first { (s, x) } else { (x, s) };
            match comparison(op, a, b) {
                Some(keep) => keep.then_some((l, x)),
                None => Some((without_name(l), arithmetic(op, a, b))),
            }
        })
        .collect()
}

/// `15m`, `1h`, `30s`, `1h30m` in seconds.
pub fn seconds(duration: &str) -> f64 {
    let mut total = 0.0;
    let mut number = String::new();
    for c in duration.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: f64 = number
            .parse()
            .unwrap_or_else(|_| panic!("duration {duration}"));
        number.clear();
        total += n * match c {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            'd' => 86400.0,
            _ => panic!("duration {duration}"),
        };
    }
    assert!(number.is_empty(), "duration {duration} has no unit");
    total
}

/// The label sets an alert with expression `expr` and `for` fires for at
/// `t`: those its expression returned at every evaluation from `t - for`
/// to `t`.
pub fn firing(expr: &str, r#for: &str, db: &Db, t: f64) -> Vec<Labels> {
    let ast = parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    let hold = seconds(r#for);
    let mut at = t - hold;
    let mut alive: Option<Vec<Labels>> = None;
    while at <= t + 1e-9 {
        let now: Vec<Labels> = match eval(&ast, db, at) {
            Value::Vector(v) => v.into_iter().map(|(l, _)| l).collect(),
            other => panic!("an alert's expression must be a vector: {other:?}"),
        };
        alive = Some(match alive {
            None => now,
            Some(before) => before.into_iter().filter(|l| now.contains(l)).collect(),
        });
        at += EVALUATION_INTERVAL;
    }
    alive.unwrap_or_default()
}

/// The metric names an expression selects.
pub fn metric_names(expr: &str) -> Vec<String> {
    fn walk(e: &Expr, out: &mut Vec<String>) {
        match e {
            Expr::VectorSelector(vs) => out.extend(vs.name.clone()),
            Expr::MatrixSelector(ms) => out.extend(ms.vs.name.clone()),
            Expr::Paren(p) => walk(&p.expr, out),
            Expr::Aggregate(a) => walk(&a.expr, out),
            Expr::Unary(u) => walk(&u.expr, out),
            Expr::Binary(b) => {
                walk(&b.lhs, out);
                walk(&b.rhs, out);
            }
            Expr::Call(c) => c.args.args.iter().for_each(|a| walk(a, out)),
            Expr::Subquery(s) => walk(&s.expr, out),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(
        &parser::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}")),
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increase_extrapolates_as_prometheus_does() {
        // A counter scraped every 30 s, 0 then 1 from t=600: over 1 h at
        // t=3600 it grew by 1 (the window starts before the series, so no
        // extrapolation before its first sample beyond the zero point).
        let mut db = Db::default();
        db.scrape("c_total", &[], (0.0, 3600.0), 30.0, |t| {
            if t < 600.0 {
                0.0
            } else {
                1.0
            }
        });
        let v = eval(
            &parser::parse("increase(c_total[1h])").unwrap(),
            &db,
            3600.0,
        )
        .vector();
        assert_eq!(v.len(), 1);
        assert!((v[0].1 - 1.0).abs() < 0.05, "{v:?}");
        // One sample in the window: no result at all.
        let mut one = Db::default();
        one.scrape("c_total", &[], (3600.0, 3600.0), 30.0, |_| 1.0);
        let v = eval(
            &parser::parse("increase(c_total[1h])").unwrap(),
            &one,
            3600.0,
        )
        .vector();
        assert!(v.is_empty(), "{v:?}");
    }

    #[test]
    fn selectors_look_back_five_minutes_and_aggregations_group() {
        let mut db = Db::default();
        db.scrape("g", &[("p", "a"), ("r", "1")], (0.0, 100.0), 30.0, |_| 2.0);
        db.scrape("g", &[("p", "a"), ("r", "2")], (0.0, 100.0), 30.0, |_| 5.0);
        db.scrape("g", &[("p", "b")], (0.0, 100.0), 30.0, |_| 1.0);
        let q = parser::parse("max by (p) (g) > 1").unwrap();
        let v = eval(&q, &db, 100.0).vector();
        assert_eq!(v, vec![(Labels::from([("p".into(), "a".into())]), 5.0)]);
        // 90 s after the last sample: still seen; 400 s after: gone.
        assert_eq!(eval(&q, &db, 190.0).vector().len(), 1);
        assert!(eval(&q, &db, 500.0).vector().is_empty());
    }

    #[test]
    fn absent_takes_the_selectors_labels_and_or_fills_in() {
        let db = Db::default();
        let q = parser::parse(r#"max(x{job="j"}) < 1 or absent(x{job="j"})"#).unwrap();
        assert_eq!(
            eval(&q, &db, 0.0).vector(),
            vec![(Labels::from([("job".into(), "j".into())]), 1.0)]
        );
    }

    #[test]
    fn on_matches_vectors_by_the_named_labels() {
        let mut db = Db::default();
        db.scrape("a", &[("p", "x"), ("t", "d")], (0.0, 0.0), 1.0, |_| 10.0);
        db.scrape("b", &[("p", "x")], (0.0, 0.0), 1.0, |_| 3.0);
        let q = parser::parse("max by (p, t) (a) > on (p) max by (p) (b)").unwrap();
        assert_eq!(eval(&q, &db, 0.0).vector().len(), 1);
        let q = parser::parse("max by (p, t) (a) < on (p) max by (p) (b)").unwrap();
        assert!(eval(&q, &db, 0.0).vector().is_empty());
    }

    #[test]
    fn for_needs_every_evaluation_over_the_period() {
        let mut db = Db::default();
        db.scrape("up", &[], (0.0, 3600.0), 30.0, |t| {
            if t < 3300.0 {
                1.0
            } else {
                0.0
            }
        });
        assert!(
            firing("up < 1", "10m", &db, 3600.0).is_empty(),
            "down 5 of 10 minutes"
        );
        assert_eq!(firing("up < 1", "5m", &db, 3600.0).len(), 1);
        assert_eq!(seconds("1h30m"), 5400.0);
    }
}
