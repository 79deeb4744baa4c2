//! The oracle's corpus: one YAML file a case, each a stream of documents. Pods are the
//! case (created in file order, each on both nodes); every other document (a ConfigMap,
//! a Secret, a PVC...) is created first, in both namespaces. A pod's `spec.nodeName` is
//! set by the oracle. A `PodResize` document (the oracle's own kind) names a pod of the
//! case and holds a `spec` that is applied to that pod's `resize` subresource, on both
//! nodes, once every pod has settled.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

/// One case of the corpus.
#[derive(Debug, Clone)]
pub struct Case {
    /// The file's stem.
    pub name: String,
    /// The file it came from.
    pub path: PathBuf,
    /// Objects created before the pods, in file order.
    pub objects: Vec<Value>,
    /// The pods compared, in file order.
    pub pods: Vec<Value>,
    /// Resizes of the case's pods, applied after they settled.
    pub resizes: Vec<Value>,
}

impl Case {
    /// The names of the case's pods.
    pub fn pod_names(&self) -> impl Iterator<Item = &str> {
        self.pods
            .iter()
            .filter_map(|pod| pod.pointer("/metadata/name").and_then(Value::as_str))
    }
}

/// Loads every `*.yaml` file of `dir`, sorted by name, keeping those whose name
/// contains `only` when given.
pub fn load(dir: &Path, only: Option<&str>) -> anyhow::Result<Vec<Case>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the corpus {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    let mut cases = Vec::new();
    for path in paths {
        let name = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .context("a corpus file name is not UTF-8")?
            .to_string();
        if only.is_some_and(|only| !name.contains(only)) {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let documents: Vec<Value> = serde_saphyr::from_multiple(&text)
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        let (resizes, documents): (Vec<Value>, Vec<Value>) = documents
            .into_iter()
            .filter(|doc| !doc.is_null())
            .partition(|doc| doc["kind"] == "PodResize");
        let (pods, objects): (Vec<Value>, Vec<Value>) =
            documents.into_iter().partition(|doc| doc["kind"] == "Pod");
        anyhow::ensure!(!pods.is_empty(), "{}: no Pod in the case", path.display());
        for pod in &pods {
            anyhow::ensure!(
                pod.pointer("/metadata/name").is_some_and(Value::is_string),
                "{}: a Pod without metadata.name",
                path.display()
            );
        }
        for resize in &resizes {
            let target = resize.pointer("/metadata/name").and_then(Value::as_str);
            anyhow::ensure!(
                target
                    .is_some_and(|target| pods.iter().any(|pod| pod["metadata"]["name"] == target))
                    && resize["spec"].is_object(),
                "{}: a PodResize needs metadata.name (a pod of the case) and a spec",
                path.display()
            );
        }
        cases.push(Case {
            name,
            path,
            objects,
            pods,
            resizes,
        });
    }
    let mut seen = std::collections::BTreeMap::new();
    for case in &cases {
        for object in case.objects.iter().chain(&case.pods) {
            let key = format!("{} {}", object["kind"], object["metadata"]["name"]);
            if let Some(other) = seen.insert(key.clone(), case.name.clone()) {
                anyhow::bail!(
                    "{key} is in cases {other} and {}: names must be unique across the corpus (all cases share two namespaces)",
                    case.name
                );
            }
        }
    }
    Ok(cases)
}
