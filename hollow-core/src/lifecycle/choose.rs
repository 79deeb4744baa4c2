//! Choosing the rule for an object: match, weigh, draw from the seed.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use super::Lifecycle;
use super::model::{
    ContainerStep, DeletionStep, NodeMatch, NodeStep, PodMatch, PullStep, Rule, Steps,
};
use crate::pod::ContainerKind;

/// What a pod rule is matched against.
#[derive(Debug, Clone, Copy)]
pub struct ContainerFacts<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's name.
    pub pod: &'a str,
    /// The pod's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The pod's annotations.
    pub annotations: &'a BTreeMap<String, String>,
    /// The container's name (empty for pulls).
    pub container: &'a str,
    /// The image as the pod spec names it.
    pub image: &'a str,
    /// The container's kind.
    pub kind: ContainerKind,
    /// How many times the container was started before.
    pub attempt: u32,
}

/// What a node rule is matched against.
#[derive(Debug, Clone, Copy)]
pub struct NodeFacts<'a> {
    /// The node's name.
    pub name: &'a str,
    /// Its configured labels.
    pub labels: &'a BTreeMap<String, String>,
    /// Its configured annotations.
    pub annotations: &'a BTreeMap<String, String>,
}

/// The chosen rule's steps, and when they begin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan<'a, S> {
    /// The rule's name.
    pub rule: &'a str,
    /// Its delay plus the drawn jitter.
    pub delay: Duration,
    /// Its steps.
    pub steps: &'a [S],
}

fn contains_all(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> bool {
    want.iter().all(|(k, v)| have.get(k) == Some(v))
}

fn any_or_in<T: PartialEq + ?Sized>(allowed: &[impl AsRef<T>], value: &T) -> bool {
    allowed.is_empty() || allowed.iter().any(|a| a.as_ref() == value)
}

impl PodMatch {
    /// Whether the facts satisfy every field given (`check_container` false for pulls).
    pub fn matches(&self, facts: &ContainerFacts<'_>, check_container: bool) -> bool {
        any_or_in::<str>(&self.namespaces, facts.namespace)
            && contains_all(facts.labels, &self.labels)
            && contains_all(facts.annotations, &self.annotations)
            && (!check_container || any_or_in::<str>(&self.containers, facts.container))
            && any_or_in::<str>(&self.images, facts.image)
            && (!check_container || self.kinds.is_empty() || self.kinds.contains(&facts.kind))
    }
}

impl NodeMatch {
    /// Whether the node satisfies every field given.
    pub fn matches(&self, facts: &NodeFacts<'_>) -> bool {
        any_or_in::<str>(&self.names, facts.name)
            && contains_all(facts.labels, &self.labels)
            && contains_all(facts.annotations, &self.annotations)
    }
}

/// A generator fixed by the seed and the object's identity.
fn rng_for(seed: u64, key: &str) -> StdRng {
    let digest = Sha256::new()
        .chain_update(seed.to_le_bytes())
        .chain_update(key.as_bytes())
        .finalize();
    let mut bytes = [0u8; 32];
    bytes.copy_from_slice(&digest);
    StdRng::from_seed(bytes)
}

/// Picks one of the matching rules by weight and draws its jitter.
fn choose<'a, M, S>(
    rules: &'a [Rule<M, S>],
    matches: impl Fn(&M) -> bool,
    seed: u64,
    key: &str,
) -> Option<Plan<'a, S>> {
    let candidates: Vec<&Rule<M, S>> = rules.iter().filter(|r| matches(&r.selector)).collect();
    let total: u64 = candidates.iter().map(|r| u64::from(r.weight.get())).sum();
    if total == 0 {
        return None;
    }
    let mut rng = rng_for(seed, key);
    let mut ticket = rng.random_range(0..total);
    let rule = candidates.into_iter().find(|r| {
        let weight = u64::from(r.weight.get());
        if ticket < weight {
            true
        } else {
            ticket -= weight;
            false
        }
    })?;
    let jitter_ms = u64::try_from(rule.jitter.as_millis()).unwrap_or(u64::MAX);
    let jitter = Duration::from_millis(rng.random_range(0..=jitter_ms));
    Some(Plan {
        rule: &rule.name,
        delay: rule.delay + jitter,
        steps: &rule.steps,
    })
}

fn pod_key(kind: &str, facts: &ContainerFacts<'_>, tail: &str) -> String {
    format!("{kind}/{}/{}/{tail}", facts.namespace, facts.pod)
}

impl Lifecycle {
    /// The plan for a container that starts now.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use hollow_core::lifecycle::{ContainerFacts, Lifecycle};
    /// use hollow_core::pod::ContainerKind;
    ///
    /// let lifecycle = Lifecycle::preset("realistic").unwrap();
    /// let none = BTreeMap::new();
    /// let facts = ContainerFacts {
    ///     namespace: "default", pod: "web-0", labels: &none, annotations: &none,
    ///     container: "init", image: "busybox", kind: ContainerKind::Init, attempt: 0,
    /// };
    /// let plan = lifecycle.container_plan(&facts).unwrap();
    /// // The same seed and pod always give the same plan.
    /// assert_eq!(Some(plan.clone()), lifecycle.container_plan(&facts));
    /// ```
    pub fn container_plan(&self, facts: &ContainerFacts<'_>) -> Option<Plan<'_, ContainerStep>> {
        let key = pod_key(
            "container",
            facts,
            &format!("{}/{}", facts.container, facts.attempt),
        );
        choose(
            &self.containers,
            |m| m.matches(facts, true),
            self.seed,
            &key,
        )
    }

    /// The plan for a pull of `facts.image` (the same for every attempt of a pod, as a
    /// broken image stays broken).
    pub fn pull_plan(&self, facts: &ContainerFacts<'_>) -> Option<Plan<'_, PullStep>> {
        let key = pod_key("pull", facts, facts.image);
        choose(&self.pulls, |m| m.matches(facts, false), self.seed, &key)
    }

    /// The plan for stopping a container of a pod being deleted.
    pub fn deletion_plan(&self, facts: &ContainerFacts<'_>) -> Option<Plan<'_, DeletionStep>> {
        let key = pod_key("deletion", facts, facts.container);
        choose(&self.deletions, |m| m.matches(facts, true), self.seed, &key)
    }

    /// The plan for a node that starts now.
    pub fn node_plan(&self, facts: &NodeFacts<'_>) -> Option<Plan<'_, NodeStep>> {
        let key = format!("node/{}", facts.name);
        choose(&self.nodes, |m| m.matches(facts), self.seed, &key)
    }
}

impl<S> Steps<S> {
    /// The steps as a slice.
    pub fn as_slice(&self) -> &[S] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{ContainerRule, PodMatch};

    fn facts<'a>(labels: &'a BTreeMap<String, String>, pod: &'a str) -> ContainerFacts<'a> {
        ContainerFacts {
            namespace: "default",
            pod,
            labels,
            annotations: labels,
            container: "app",
            image: "nginx",
            kind: ContainerKind::Regular,
            attempt: 0,
        }
    }

    #[test]
    fn only_matching_rules_are_chosen() {
        let lifecycle = Lifecycle::default()
            .container_rule(
                ContainerRule::new("web", [ContainerStep::Ready(false)])
                    .matching(PodMatch::default().label("app", "web")),
            )
            .container_rule(
                ContainerRule::new("init-only", [ContainerStep::Exit { code: 0 }])
                    .matching(PodMatch::default().kind(ContainerKind::Init)),
            );
        let web: BTreeMap<_, _> = [("app".to_string(), "web".to_string())].into();
        let other = BTreeMap::new();
        assert_eq!(
            lifecycle.container_plan(&facts(&web, "p")).unwrap().rule,
            "web"
        );
        assert_eq!(lifecycle.container_plan(&facts(&other, "p")), None);
    }

    #[test]
    fn weights_and_jitter_are_drawn_from_the_seed() {
        let rules = |seed| {
            Lifecycle::default()
                .seed(seed)
                .container_rule(
                    ContainerRule::new("rare", [])
                        .with_delay(Duration::from_secs(1), Duration::from_secs(1)),
                )
                .container_rule(ContainerRule::new("common", []).with_weight(9))
        };
        let none = BTreeMap::new();
        let names: Vec<String> = (0..1000).map(|i| format!("pod-{i}")).collect();
        let tally = |lifecycle: &Lifecycle| -> (usize, Vec<Duration>) {
            let plans: Vec<_> = names
                .iter()
                .map(|n| lifecycle.container_plan(&facts(&none, n)).unwrap())
                .collect();
            let rare: Vec<Duration> = plans
                .iter()
                .filter(|p| p.rule == "rare")
                .map(|p| p.delay)
                .collect();
            (rare.len(), rare)
        };
        let (rare, delays) = tally(&rules(1));
        assert!(
            (50..=150).contains(&rare),
            "rare chosen {rare} times of 1000"
        );
        assert!(
            delays
                .iter()
                .all(|d| (Duration::from_secs(1)..=Duration::from_secs(2)).contains(d))
        );
        assert!(delays.iter().any(|d| *d > Duration::from_millis(1500)));
        // Same seed, same draws; another seed, other draws.
        assert_eq!(tally(&rules(1)), (rare, delays.clone()));
        assert_ne!(tally(&rules(2)).1, delays);
    }
}
