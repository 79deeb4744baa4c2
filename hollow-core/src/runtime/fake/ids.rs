//! Sandbox and container ids, and the digests image references carry.

use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::state::State;

/// A new id: the hex SHA-256 of `seed`, a counter and the time, as long as a real
/// runtime's ids.
pub(super) fn new_id(state: &mut State, seed: &str) -> String {
    state.next_id += 1;
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hex_digest(&format!("{seed}/{}/{nanos}", state.next_id))
}

/// The SHA-256 of `input`, in lowercase hex.
fn hex_digest(input: &str) -> String {
    Sha256::digest(input.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `nginx:1.27` -> `docker.io/library/nginx@sha256:<digest of the name>`.
pub(super) fn image_ref(image: &str) -> String {
    let without_tag = match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    };
    let repo = without_tag.split('@').next().unwrap_or(without_tag);
    let qualified = match repo.split_once('/') {
        None => format!("docker.io/library/{repo}"),
        Some((host, _)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            repo.to_string()
        }
        Some(_) => format!("docker.io/{repo}"),
    };
    format!("{qualified}@sha256:{}", hex_digest(image))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_refs_are_qualified_digests() {
        let nginx = image_ref("nginx:1.27");
        assert!(
            nginx.starts_with("docker.io/library/nginx@sha256:"),
            "{nginx}"
        );
        assert_eq!(nginx.len(), "docker.io/library/nginx@sha256:".len() + 64);
        assert!(image_ref("registry.k8s.io/pause:3.10").starts_with("registry.k8s.io/pause@"));
        assert!(image_ref("localhost:5000/app").starts_with("localhost:5000/app@"));
        assert!(image_ref("me/app:v1").starts_with("docker.io/me/app@"));
        assert_ne!(image_ref("nginx:1.27"), image_ref("nginx:1.28"));
    }
}
