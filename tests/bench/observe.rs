//! Watching from the outside: Ready nodes, Running pods, Lease renewals, and the API
//! server's request counters. One watch each, shared by a whole scenario.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher;
use tokio::task::JoinHandle;

/// Objects with a label, and when each was first seen in a state (nodes Ready, pods
/// Running).
#[derive(Clone, Default)]
pub struct FirstSeen(Arc<Mutex<HashMap<String, Instant>>>);

impl FirstSeen {
    pub fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    pub fn names(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }

    pub fn when(&self, name: &str) -> Option<Instant> {
        self.0.lock().unwrap().get(name).copied()
    }

    pub fn clear(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Watches `api`'s objects matching `labels` until aborted, noting when each first
/// satisfies `reached`.
fn first_seen<K>(api: Api<K>, labels: &str, reached: fn(&K) -> bool) -> (FirstSeen, JoinHandle<()>)
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
{
    let seen = FirstSeen::default();
    let record = seen.clone();
    let config = watcher::Config::default().labels(labels);
    let task = tokio::spawn(async move {
        let mut events = watcher::watcher(api, config)
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            let Ok(object) = event else { continue };
            if reached(&object)
                && let Some(name) = object.meta().name.clone()
            {
                record
                    .0
                    .lock()
                    .unwrap()
                    .entry(name)
                    .or_insert_with(Instant::now);
            }
        }
    });
    (seen, task)
}

/// Nodes matching `labels`, by when each was first Ready.
pub fn watch_nodes(client: kube::Client, labels: &str) -> (FirstSeen, JoinHandle<()>) {
    first_seen(Api::<Node>::all(client), labels, |node| {
        hollow_tests::node_ready(node) == Some("True")
    })
}

/// Pods matching `labels`, by when each was first Running.
pub fn watch_pods(client: kube::Client, labels: &str) -> (FirstSeen, JoinHandle<()>) {
    first_seen(Api::<Pod>::all(client), labels, |pod| {
        pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
}

/// One Lease's renewals: the last seen, the longest gap, how many.
type RenewalRecord = (Instant, Duration, u64);

/// Lease renewals of a set of nodes: the longest gap seen per Lease.
#[derive(Clone, Default)]
pub struct Renewals(Arc<Mutex<HashMap<String, RenewalRecord>>>);

impl Renewals {
    /// Gaps longer than `limit` (as seen by this watcher), counting a Lease not renewed
    /// since `limit` ago as a miss too; and how many renewals were seen.
    pub fn misses(&self, names: &[String], limit: Duration) -> (usize, u64) {
        let map = self.0.lock().unwrap();
        let mut misses = 0;
        let mut renewals = 0;
        for name in names {
            match map.get(name) {
                None => misses += 1,
                Some((last, longest, count)) => {
                    renewals += count;
                    if *longest > limit || last.elapsed() > limit {
                        misses += 1;
                    }
                }
            }
        }
        (misses, renewals)
    }

    pub fn reset(&self) {
        self.0.lock().unwrap().clear();
    }
}

/// Watches the Leases in kube-node-lease; each renewal is a change of `renewTime`.
pub fn watch_leases(client: kube::Client) -> (Renewals, JoinHandle<()>) {
    let renewals = Renewals::default();
    let seen = renewals.clone();
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    let task = tokio::spawn(async move {
        let mut last_renew: HashMap<String, String> = HashMap::new();
        let mut events = watcher::watcher(api, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            let Ok(lease) = event else { continue };
            let (Some(name), Some(renew)) = (
                lease.metadata.name,
                lease
                    .spec
                    .and_then(|s| s.renew_time)
                    .map(|t| t.0.to_string()),
            ) else {
                continue;
            };
            if last_renew.get(&name) == Some(&renew) {
                continue;
            }
            last_renew.insert(name.clone(), renew);
            let now = Instant::now();
            let mut map = seen.0.lock().unwrap();
            match map.get_mut(&name) {
                None => {
                    map.insert(name, (now, Duration::ZERO, 1));
                }
                Some((last, longest, count)) => {
                    *longest = (*longest).max(now - *last);
                    *last = now;
                    *count += 1;
                }
            }
        }
    });
    (renewals, task)
}

/// The API server's request counters: all requests, and by resource.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requests {
    pub total: f64,
    pub by_resource: HashMap<String, f64>,
}

impl Requests {
    pub fn since(&self, earlier: &Requests) -> Requests {
        Requests {
            total: self.total - earlier.total,
            by_resource: self
                .by_resource
                .iter()
                .map(|(k, v)| (k.clone(), v - earlier.by_resource.get(k).unwrap_or(&0.0)))
                .collect(),
        }
    }
}

/// Reads `apiserver_request_total` from the API server's /metrics.
pub async fn requests(client: &kube::Client) -> anyhow::Result<Requests> {
    let text = client
        .request_text(http::Request::get("/metrics").body(Vec::new())?)
        .await?;
    let mut requests = Requests::default();
    for line in text
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let resource = labels
            .split(',')
            .find_map(|l| l.trim_start_matches('{').strip_prefix("resource=\""))
            .map(|r| r.trim_end_matches(['"', '}']).to_string())
            .unwrap_or_default();
        requests.total += value;
        *requests.by_resource.entry(resource).or_default() += value;
    }
    Ok(requests)
}
