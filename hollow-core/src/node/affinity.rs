//! Whether a pod's node selector and required node affinity match a Node, as the
//! scheduler's `AdmissionCheck` asks it of the kubelet
//! (`nodeaffinity.GetRequiredNodeAffinity(pod).Match(node)`, in
//! k8s.io/component-helpers/scheduling/corev1/nodeaffinity), and whether it tolerates
//! the Node's NoExecute taints (`FindMatchingUntoleratedTaint` in
//! k8s.io/component-helpers/scheduling/corev1, filtered to NoExecute by
//! pkg/kubelet/lifecycle/predicate.go).

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

/// Whether the Node has a NoExecute taint, which every pod admitted must tolerate.
pub(crate) fn has_no_execute_taint(node: &Node) -> bool {
    no_execute_taints(node).next().is_some()
}

fn no_execute_taints(node: &Node) -> impl Iterator<Item = &Taint> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| t.effect == "NoExecute")
}

/// Whether the pod tolerates every NoExecute taint of the Node.
pub(crate) fn tolerates_no_execute_taints(pod: &Pod, node: &Node) -> bool {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
    no_execute_taints(node).all(|taint| tolerations.iter().any(|t| tolerates(t, taint)))
}

/// `Toleration.ToleratesTaint`: the effect is empty or the taint's; `Exists` with an
/// empty key tolerates every key; `Equal` (the default) needs the key and value.
fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// Whether the pod asks anything of its node's labels or name.
pub(crate) fn constrains_node(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    spec.node_selector.as_ref().is_some_and(|s| !s.is_empty()) || required_terms(pod).is_some()
}

fn required_terms(pod: &Pod) -> Option<&Vec<NodeSelectorTerm>> {
    Some(
        &pod.spec
            .as_ref()?
            .affinity
            .as_ref()?
            .node_affinity
            .as_ref()?
            .required_during_scheduling_ignored_during_execution
            .as_ref()?
            .node_selector_terms,
    )
}

/// Whether `node` satisfies the pod's node selector and required node affinity.
pub(crate) fn matches(pod: &Pod, node: &Node) -> bool {
    let empty = Default::default();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_matches = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref())
        .is_none_or(|selector| selector.iter().all(|(k, v)| labels.get(k) == Some(v)));
    // The terms are ORed; a term's requirements are ANDed; a term without any matches
    // nothing.
    let terms_match = required_terms(pod).is_none_or(|terms| {
        terms.iter().any(|term| {
            let expressions = term.match_expressions.as_deref().unwrap_or_default();
            let fields = term.match_fields.as_deref().unwrap_or_default();
            (!expressions.is_empty() || !fields.is_empty())
                && expressions
                    .iter()
                    .all(|r| requirement(r, labels.get(&r.key).map(String::as_str)))
                && fields.iter().all(|r| {
                    r.key == "metadata.name" && requirement(r, node.metadata.name.as_deref())
                })
        })
    });
    selector_matches && terms_match
}

fn requirement(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|w| w == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node() -> Node {
        serde_json::from_value(json!({ "metadata": { "name": "n1",
            "labels": { "zone": "a", "gpus": "4" } } }))
        .unwrap()
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({ "metadata": { "name": "p" }, "spec": spec })).unwrap()
    }

    fn affinity(terms: serde_json::Value) -> Pod {
        pod(json!({ "containers": [], "affinity": { "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": { "nodeSelectorTerms": terms } } } }))
    }

    #[test]
    fn selectors_and_required_terms_match_as_the_scheduler_matches_them() {
        let node = node();
        assert!(!constrains_node(&pod(json!({ "containers": [] }))));
        assert!(matches(
            &pod(json!({ "containers": [], "nodeSelector": { "zone": "a" } })),
            &node
        ));
        assert!(!matches(
            &pod(json!({ "containers": [], "nodeSelector": { "zone": "b" } })),
            &node
        ));
        let expr = |key: &str, op: &str, values: &[&str]| json!([{ "matchExpressions": [{ "key": key, "operator": op, "values": values }] }]);
        assert!(matches(&affinity(expr("zone", "In", &["a", "b"])), &node));
        assert!(!matches(&affinity(expr("zone", "NotIn", &["a"])), &node));
        assert!(matches(&affinity(expr("rack", "DoesNotExist", &[])), &node));
        assert!(matches(&affinity(expr("gpus", "Gt", &["3"])), &node));
        assert!(!matches(&affinity(expr("gpus", "Lt", &["3"])), &node));
        let by_name = json!([{ "matchFields": [
            { "key": "metadata.name", "operator": "In", "values": ["n1"] }] }]);
        assert!(matches(&affinity(by_name), &node));
        // Terms are ORed; an empty term matches nothing.
        let either = json!([
            { "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["b"] }] },
            { "matchExpressions": [{ "key": "zone", "operator": "Exists" }] },
        ]);
        assert!(matches(&affinity(either), &node));
        assert!(!matches(&affinity(json!([{}])), &node));
    }

    #[test]
    fn no_execute_taints_need_a_toleration() {
        let node: Node = serde_json::from_value(json!({ "metadata": { "name": "n1" },
            "spec": { "taints": [
                { "key": "dedicated", "value": "db", "effect": "NoExecute" },
                { "key": "soft", "effect": "NoSchedule" },
            ] } }))
        .unwrap();
        assert!(has_no_execute_taint(&node));
        let with = |tolerations: serde_json::Value| {
            pod(json!({ "containers": [], "tolerations": tolerations }))
        };
        assert!(!tolerates_no_execute_taints(&with(json!([])), &node));
        assert!(tolerates_no_execute_taints(
            &with(json!([{ "key": "dedicated", "value": "db" }])),
            &node
        ));
        assert!(!tolerates_no_execute_taints(
            &with(json!([{ "key": "dedicated", "value": "web" }])),
            &node
        ));
        assert!(tolerates_no_execute_taints(
            &with(json!([{ "operator": "Exists" }])),
            &node
        ));
        assert!(!tolerates_no_execute_taints(
            &with(json!([{ "key": "dedicated", "operator": "Exists", "effect": "NoSchedule" }])),
            &node
        ));
    }
}
