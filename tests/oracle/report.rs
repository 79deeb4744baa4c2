//! The oracle's findings: per pod and for the Node, each differing field judged
//! against the allow-list, and the Events each side recorded.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::allow::{self, Rule, Scope, Why};
use super::compare::{self, FieldDiff};
use super::{HOLLOW_NAMESPACE, HOLLOW_NODE, KUBEMARK_NAMESPACE, KUBEMARK_NODE};

/// A differing field and the rule that accepts it, if one does.
#[derive(Debug, Clone)]
pub struct Judged {
    /// The field.
    pub diff: FieldDiff,
    /// The accepting rule.
    pub rule: Option<&'static Rule>,
}

impl Judged {
    /// Whether no rule accepts it.
    pub fn unexplained(&self) -> bool {
        self.rule.is_none()
    }

    /// Whether a rule says hollow is still wrong here.
    pub fn open_in_hollow(&self) -> bool {
        matches!(
            self.rule.map(|rule| rule.why),
            Some(Why::OpenInHollow { .. })
        )
    }
}

/// One pod compared.
#[derive(Debug, Clone)]
pub struct PodReport {
    /// The corpus case.
    pub case: String,
    /// The pod's name (the same on both sides).
    pub pod: String,
    /// A side that has no such pod.
    pub missing: Option<&'static str>,
    /// The fields that differ.
    pub differences: Vec<Judged>,
    /// The reasons of the Events recorded for the pod on Kubemark's side.
    pub kubemark_events: Vec<String>,
    /// The same on hollow's side.
    pub hollow_events: Vec<String>,
}

/// Everything the oracle found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Whether the pods stopped changing before the oracle compared them.
    pub settled: bool,
    /// The pods.
    pub pods: Vec<PodReport>,
    /// The Node objects.
    pub node: PodReport,
}

fn names() -> [(&'static str, &'static str); 4] {
    [
        (KUBEMARK_NAMESPACE, "<namespace>"),
        (HOLLOW_NAMESPACE, "<namespace>"),
        (KUBEMARK_NODE, "<node>"),
        (HOLLOW_NODE, "<node>"),
    ]
}

fn judge(scope: Scope, case: &str, differences: Vec<FieldDiff>) -> Vec<Judged> {
    differences
        .into_iter()
        .map(|diff| Judged {
            rule: allow::rule_for(scope, case, &diff.path, diff.kubemark.as_deref()),
            diff,
        })
        .collect()
}

/// Compares one pod's statuses.
pub fn compare_pod(
    case: &str,
    pod: &str,
    kubemark: Option<&Value>,
    hollow: Option<&Value>,
    events: &BTreeMap<String, Vec<String>>,
) -> PodReport {
    let names = names();
    let (missing, differences) = match (kubemark, hollow) {
        (Some(kubemark), Some(hollow)) => (
            None,
            judge(
                Scope::Pod,
                case,
                compare::diff(
                    &compare::normalise(kubemark, &names),
                    &compare::normalise(hollow, &names),
                ),
            ),
        ),
        (None, _) => (Some("kubemark"), Vec::new()),
        (_, None) => (Some("hollow"), Vec::new()),
    };
    let events_of = |namespace: &str| {
        events
            .get(&format!("{namespace}/{pod}"))
            .cloned()
            .unwrap_or_default()
    };
    PodReport {
        case: case.to_string(),
        pod: pod.to_string(),
        missing,
        differences,
        kubemark_events: events_of(KUBEMARK_NAMESPACE),
        hollow_events: events_of(HOLLOW_NAMESPACE),
    }
}

/// Compares the Node objects (labels, annotations, spec and status).
pub fn compare_node(
    kubemark: &Value,
    hollow: &Value,
    events: &BTreeMap<String, Vec<String>>,
) -> PodReport {
    let names = names();
    let events_of = |node: &str| {
        events
            .get(&format!("node/{node}"))
            .cloned()
            .unwrap_or_default()
    };
    PodReport {
        case: "node".into(),
        pod: "Node".into(),
        missing: None,
        differences: judge(
            Scope::Node,
            "node",
            compare::diff(
                &compare::normalise(kubemark, &names),
                &compare::normalise(hollow, &names),
            ),
        ),
        kubemark_events: events_of(KUBEMARK_NODE),
        hollow_events: events_of(HOLLOW_NODE),
    }
}

impl PodReport {
    /// Whether the two sides are equal field for field.
    pub fn equal(&self) -> bool {
        self.missing.is_none() && self.differences.is_empty()
    }

    /// Whether every difference is accepted.
    pub fn explained(&self) -> bool {
        self.missing.is_none() && !self.differences.iter().any(Judged::unexplained)
    }
}

impl Report {
    fn all(&self) -> impl Iterator<Item = &PodReport> {
        self.pods.iter().chain(std::iter::once(&self.node))
    }

    /// Differences no rule accepts, and pods missing on a side.
    pub fn unexplained(&self) -> usize {
        self.all()
            .map(|pod| {
                usize::from(pod.missing.is_some())
                    + pod.differences.iter().filter(|d| d.unexplained()).count()
            })
            .sum()
    }

    /// One line: pods equal, fields differing, and how they are judged.
    pub fn summary(&self) -> String {
        let differences: Vec<&Judged> = self.all().flat_map(|p| &p.differences).collect();
        let count = |kind: fn(&Why) -> bool| {
            differences
                .iter()
                .filter(|d| d.rule.is_some_and(|rule| kind(&rule.why)))
                .count()
        };
        let fakes = count(|why| matches!(why, Why::KubemarkFake { .. }));
        let deliberate = count(|why| matches!(why, Why::Deliberate { .. }));
        let open = count(|why| matches!(why, Why::OpenInHollow { .. }));
        format!(
            "{}/{} pods equal, {} equal but for accepted differences; {} differing fields: \
             {fakes} from Kubemark's fakes, {deliberate} deliberate, {open} open in hollow, \
             {} unexplained{}",
            self.pods.iter().filter(|p| p.equal()).count(),
            self.pods.len(),
            self.pods
                .iter()
                .filter(|p| !p.equal() && p.explained())
                .count(),
            differences.len(),
            self.unexplained(),
            if self.settled {
                ""
            } else {
                " (compared before the pods settled)"
            },
        )
    }

    /// The per-pod report, then the summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for pod in self.all() {
            let verdict = if pod.equal() {
                "equal"
            } else if pod.explained() {
                "equal but for accepted differences"
            } else {
                "DIFFERENT"
            };
            let _ = writeln!(out, "{} / {}: {verdict}", pod.case, pod.pod);
            if let Some(side) = pod.missing {
                let _ = writeln!(out, "    missing on the {side} side");
            }
            for judged in &pod.differences {
                let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(absent)".into());
                let why = match judged.rule.map(|rule| rule.why) {
                    None => "UNEXPLAINED".to_string(),
                    Some(Why::KubemarkFake { .. }) => "Kubemark's fake".to_string(),
                    Some(Why::Deliberate { .. }) => "deliberate".to_string(),
                    Some(Why::OpenInHollow { issue, .. }) => format!("open in hollow, #{issue}"),
                };
                let _ = writeln!(
                    out,
                    "    {}: kubemark {} | hollow {}   [{why}]",
                    judged.diff.path,
                    show(&judged.diff.kubemark),
                    show(&judged.diff.hollow),
                );
            }
            let _ = writeln!(
                out,
                "    events: kubemark [{}] | hollow [{}]",
                pod.kubemark_events.join(", "),
                pod.hollow_events.join(", ")
            );
        }
        let _ = writeln!(out, "{}", self.summary());
        out
    }

    /// A Markdown table, a row a pod, for `docs/fidelity.md`.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| case | pod | verdict | differing fields (accepted: K = Kubemark's fake, D = deliberate, H = open in hollow) | Events (hollow) |\n|---|---|---|---|---|\n",
        );
        for pod in self.all() {
            let verdict = if pod.equal() {
                "equal"
            } else if pod.explained() {
                "accepted"
            } else {
                "**different**"
            };
            let fields: Vec<String> = pod
                .differences
                .iter()
                .map(|judged| {
                    let mark = match judged.rule.map(|rule| rule.why) {
                        None => "**?**",
                        Some(Why::KubemarkFake { .. }) => "K",
                        Some(Why::Deliberate { .. }) => "D",
                        Some(Why::OpenInHollow { .. }) => "H",
                    };
                    format!("`{}` {mark}", judged.diff.path)
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {verdict} | {} | {} |",
                pod.case,
                pod.pod,
                fields.join("<br>"),
                pod.hollow_events.join(", ")
            );
        }
        let _ = writeln!(out, "\n{}", self.summary());
        out
    }
}
