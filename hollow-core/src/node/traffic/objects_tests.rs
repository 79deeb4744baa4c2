//! Tests of the watched objects: references, lookups, idle watches.

use super::*;
use serde_json::json;

#[test]
fn a_pod_refers_to_every_object_its_env_volumes_and_pull_secrets_name() {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "name": "web", "namespace": "ns" },
        "spec": {
            "serviceAccountName": "builder",
            "imagePullSecrets": [{ "name": "registry" }],
            "initContainers": [{ "name": "i", "envFrom": [{ "configMapRef": { "name": "init-env", "optional": true } }] }],
            "containers": [{ "name": "c", "env": [
                { "name": "A", "valueFrom": { "secretKeyRef": { "name": "creds", "key": "k" } } },
            ] }],
            "volumes": [
                { "name": "a", "configMap": { "name": "settings" } },
                { "name": "kube-api-access-x", "projected": { "sources": [
                    { "serviceAccountToken": { "path": "token", "expirationSeconds": 3607 } },
                    { "configMap": { "name": "kube-root-ca.crt" } },
                ] } },
            ],
        },
    }))
    .unwrap();
    let traffic = PodTraffic::of(&pod).unwrap();
    let names: Vec<(Kind, &str, bool)> = traffic
        .objects
        .iter()
        .map(|(k, n, synced)| (*k, &**n, *synced))
        .collect();
    // Only those read every sync (volumes, pull secrets) are never idle.
    assert_eq!(
        names,
        [
            (Kind::ConfigMap, "init-env", false),
            (Kind::ConfigMap, "kube-root-ca.crt", true),
            (Kind::ConfigMap, "settings", true),
            (Kind::Secret, "creds", false),
            (Kind::Secret, "registry", true),
        ]
    );
    assert_eq!(
        &*traffic.tokens,
        [TokenSource::new(
            "kube-api-access-x",
            "builder",
            None,
            Some(3607)
        )]
    );
}

#[test]
fn volume_plugins_credentials_are_referred_to_as_the_kubelet_visits_them() {
    let pod: Pod = serde_json::from_value(json!({
        "spec": {
            "containers": [{ "name": "c" }],
            "volumes": [
                { "name": "a", "azureFile": { "secretName": "azure", "shareName": "s" } },
                { "name": "b", "csi": { "driver": "d", "nodePublishSecretRef": { "name": "csi" } } },
                { "name": "c", "iscsi": { "targetPortal": "t", "iqn": "i", "lun": 0, "secretRef": { "name": "iscsi" } } },
                { "name": "d", "flexVolume": { "driver": "f", "secretRef": { "name": "flex" } } },
                { "name": "e", "secret": { "secretName": "plain" } },
            ],
        },
    }))
    .unwrap();
    let traffic = PodTraffic::of(&pod).unwrap();
    let names: Vec<&str> = traffic
        .objects
        .iter()
        .map(|(kind, name, synced)| {
            assert_eq!((*kind, *synced), (Kind::Secret, true));
            &**name
        })
        .collect();
    assert_eq!(names, ["azure", "csi", "flex", "iscsi", "plain"]);
}

#[test]
fn a_pod_without_references_asks_for_nothing() {
    let pod: Pod = serde_json::from_value(json!({
        "spec": { "containers": [{ "name": "c" }] },
    }))
    .unwrap();
    assert_eq!(PodTraffic::of(&pod), None);
}

#[tokio::test(start_paused = true)]
async fn a_lookup_answers_from_the_watch_once_synced_and_none_otherwise() {
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let cancel = CancellationToken::new();
    let node = NodeTraffic::default();
    let pod = PodTraffic {
        objects: Box::new([(Kind::Secret, "creds".into(), true)]),
        tokens: Box::new([]),
    };
    node.register(&client, &cancel, "ns", &pod);
    let view = node.watches.lock().values().next().unwrap().view.clone();
    // Not watched: the node reads it instead.
    assert_eq!(node.lookup(Kind::ConfigMap, "ns", "creds").await, None);
    // Watched, not synced within a second: read too.
    assert_eq!(node.lookup(Kind::Secret, "ns", "creds").await, None);
    view.update(Update::Restart);
    view.update(Update::Synced);
    assert_eq!(node.lookup(Kind::Secret, "ns", "creds").await, Some(None));
    view.update(Update::Present(vec!["password".into()]));
    assert_eq!(
        node.lookup(Kind::Secret, "ns", "creds").await,
        Some(Some(vec!["password".into()]))
    );
    view.update(Update::Gone);
    assert_eq!(node.lookup(Kind::Secret, "ns", "creds").await, Some(None));
    // A re-list: unknown until synced again, then answered.
    view.update(Update::Restart);
    let later = {
        let view = view.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            view.update(Update::Present(vec![]));
            view.update(Update::Synced);
        })
    };
    assert_eq!(
        node.lookup(Kind::Secret, "ns", "creds").await,
        Some(Some(vec![]))
    );
    later.await.unwrap();
    cancel.cancel();
}

#[tokio::test]
async fn an_object_is_watched_while_a_pod_refers_to_it() {
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let cancel = CancellationToken::new();
    let pod = PodTraffic {
        objects: Box::new([(Kind::ConfigMap, "settings".into(), true)]),
        tokens: Box::new([]),
    };
    let node = NodeTraffic::default();
    node.register(&client, &cancel, "ns", &pod);
    node.register(&client, &cancel, "ns", &pod);
    node.register(&client, &cancel, "other", &pod);
    assert_eq!(node.watched(), 2);
    node.unregister("ns", &pod);
    assert_eq!(node.watched(), 2);
    node.unregister("ns", &pod);
    node.unregister("other", &pod);
    assert_eq!(node.watched(), 0);
    cancel.cancel();
}

#[tokio::test(start_paused = true)]
async fn a_watch_only_the_environment_needs_stops_after_five_idle_minutes() {
    let client =
        kube::Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let cancel = CancellationToken::new();
    let node = NodeTraffic::default();
    let pod = PodTraffic {
        objects: Box::new([
            (Kind::ConfigMap, "env-only".into(), false),
            (Kind::ConfigMap, "mounted".into(), true),
        ]),
        tokens: Box::new([]),
    };
    node.register(&client, &cancel, "ns", &pod);
    for held in node.watches.lock().values() {
        held.view.update(Update::Synced);
    }
    tokio::time::sleep(Duration::from_secs(4 * 60)).await;
    assert_eq!(node.watching(), 2, "not idle for five minutes yet");
    tokio::time::sleep(Duration::from_secs(2 * 60 + 1)).await;
    assert_eq!(node.watching(), 1, "the environment's object went idle");
    assert_eq!(node.watched(), 2, "still referred to");
    // A read (a container starting) watches it again; unsynced until the watch says.
    assert_eq!(node.lookup(Kind::ConfigMap, "ns", "env-only").await, None);
    assert_eq!(node.watching(), 2);
    let key = Key::new(Kind::ConfigMap, "ns", "env-only");
    node.watches.lock()[&key].view.update(Update::Synced);
    // Read, it stays watched five more minutes; the mounted one all along.
    tokio::time::sleep(Duration::from_secs(20 * 60)).await;
    assert_eq!(node.watching(), 1);
    assert!(
        !node.watches.lock()[&Key::new(Kind::ConfigMap, "ns", "mounted")]
            .view
            .state
            .lock()
            .idle
    );
    cancel.cancel();
}
