//! What the fake keeps of the configuration a container was created with: all of it
//! while the container may read it again, and once it started, for a plain container
//! (one whose command the userland does not run, with no files, environment, hollow
//! annotations or lifecycle to match), only what its status, logs and port forwards
//! show. A container lives as long as its pod, and the whole configuration is some
//! 350 bytes before its strings.

use std::borrow::Cow;

use super::userland;
use crate::pod::ContainerKind;
use crate::runtime::types::ContainerConfig;

/// A container's configuration as the fake keeps it.
pub(super) enum Held {
    /// All of it.
    Full(Box<ContainerConfig>),
    /// A plain container's.
    Plain(Plain),
}

/// What a plain container's status, logs and port forwards show.
pub(super) struct Plain {
    /// Held once per process (`crate::interned`), as the image.
    name: std::sync::Arc<str>,
    image: std::sync::Arc<str>,
    /// The pod's UID, namespace and name, one after the other.
    pod: Box<str>,
    /// Where the namespace and the name end in `pod`.
    pod_ends: [u32; 2],
    command: Box<[String]>,
    ports: Box<[u16]>,
    attempt: u32,
    kind: ContainerKind,
}

impl Held {
    /// Keeps only what a plain container shows, if it is one.
    pub(super) fn slim(&mut self) {
        let Held::Full(config) = self else { return };
        let plain = !userland::runs(&config.command)
            && config.env.is_empty()
            && config.files.is_empty()
            && config.shared_dirs.is_empty()
            && config.termination_message_path.is_none()
            && !config.fallback_to_logs
            && config.hostname.is_none()
            && config.annotations.is_empty()
            && config.pod_labels.is_empty();
        if !plain {
            return;
        }
        let config = std::mem::take(&mut **config);
        let uid_end = config.pod_uid.len();
        let namespace_end = uid_end + config.pod_namespace.len();
        let (Ok(uid_end), Ok(namespace_end)) =
            (u32::try_from(uid_end), u32::try_from(namespace_end))
        else {
            *self = Held::Full(Box::new(config));
            return;
        };
        *self = Held::Plain(Plain {
            pod: format!(
                "{}{}{}",
                config.pod_uid, config.pod_namespace, config.pod_name
            )
            .into(),
            pod_ends: [uid_end, namespace_end],
            name: crate::interned::intern(&config.name),
            image: crate::interned::intern(&config.image),
            command: config.command.into(),
            ports: config.ports.into(),
            attempt: config.attempt,
            kind: config.kind,
        });
    }

    /// The whole configuration (made again for a plain container).
    pub(super) fn config(&self) -> Cow<'_, ContainerConfig> {
        match self {
            Held::Full(config) => Cow::Borrowed(config),
            Held::Plain(plain) => Cow::Owned(ContainerConfig {
                name: plain.name.to_string(),
                image: plain.image.to_string(),
                kind: plain.kind,
                attempt: plain.attempt,
                pod_uid: plain.pod_uid().to_string(),
                pod_namespace: plain.pod_namespace().to_string(),
                pod_name: plain.pod_name().to_string(),
                command: plain.command.to_vec(),
                ports: plain.ports.to_vec(),
                ..ContainerConfig::default()
            }),
        }
    }

    /// The container as the userland sees it.
    pub(super) fn view(&self) -> userland::Container<'_> {
        match self {
            Held::Full(config) => config.view(),
            Held::Plain(plain) => userland::Container {
                image: &plain.image,
                command: &plain.command,
                env: &[],
                hostname: plain.pod_name(),
                files: &[],
            },
        }
    }

    pub(super) fn name(&self) -> &str {
        match self {
            Held::Full(config) => &config.name,
            Held::Plain(plain) => &plain.name,
        }
    }

    pub(super) fn image(&self) -> &str {
        match self {
            Held::Full(config) => &config.image,
            Held::Plain(plain) => &plain.image,
        }
    }

    pub(super) fn pod_uid(&self) -> &str {
        match self {
            Held::Full(config) => &config.pod_uid,
            Held::Plain(plain) => plain.pod_uid(),
        }
    }

    pub(super) fn pod_name(&self) -> &str {
        match self {
            Held::Full(config) => &config.pod_name,
            Held::Plain(plain) => plain.pod_name(),
        }
    }

    pub(super) fn attempt(&self) -> u32 {
        match self {
            Held::Full(config) => config.attempt,
            Held::Plain(plain) => plain.attempt,
        }
    }

    pub(super) fn ports(&self) -> &[u16] {
        match self {
            Held::Full(config) => &config.ports,
            Held::Plain(plain) => &plain.ports,
        }
    }

    /// The `emptyDir` volumes it mounts (a plain container mounts none).
    pub(super) fn shared_dirs(&self) -> &[(String, String)] {
        match self {
            Held::Full(config) => &config.shared_dirs,
            Held::Plain(_) => &[],
        }
    }
}

impl Plain {
    fn pod_part(&self, from: Option<u32>, to: Option<u32>) -> &str {
        let at = |end: Option<u32>| end.map(|end| end as usize);
        let from = at(from).unwrap_or(0);
        let to = at(to).unwrap_or(self.pod.len());
        self.pod.get(from..to).unwrap_or_default()
    }

    fn pod_uid(&self) -> &str {
        self.pod_part(None, Some(self.pod_ends[0]))
    }

    fn pod_namespace(&self) -> &str {
        self.pod_part(Some(self.pod_ends[0]), Some(self.pod_ends[1]))
    }

    fn pod_name(&self) -> &str {
        self.pod_part(Some(self.pod_ends[1]), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ContainerConfig {
        ContainerConfig {
            name: "app".into(),
            image: "nginx:1.27".into(),
            kind: ContainerKind::Regular,
            attempt: 2,
            pod_uid: "u1".into(),
            pod_namespace: "default".into(),
            pod_name: "web-1".into(),
            command: vec!["/app".into(), "--serve".into()],
            ports: vec![8080],
            ..ContainerConfig::default()
        }
    }

    #[test]
    fn a_plain_container_keeps_what_it_shows_and_reads_back_the_same() {
        let mut held = Held::Full(Box::new(config()));
        held.slim();
        assert!(matches!(held, Held::Plain(_)));
        assert_eq!(*held.config(), config());
        assert_eq!(
            (held.name(), held.image(), held.pod_uid(), held.pod_name()),
            ("app", "nginx:1.27", "u1", "web-1")
        );
        assert_eq!((held.attempt(), held.ports()), (2, &[8080][..]));
        assert!(held.shared_dirs().is_empty());
        assert_eq!(held.view().hostname, "web-1");
        // Size guards (#21): a container lives as long as its pod.
        let sizes = (
            size_of::<Held>(),
            size_of::<super::super::state::Container>(),
        );
        assert!(sizes.0 <= 112 && sizes.1 <= 152, "{sizes:?} bytes");
    }

    #[test]
    fn a_container_that_reads_its_configuration_again_keeps_all_of_it() {
        let rich = [
            ContainerConfig {
                command: vec!["sh".into(), "-c".into(), "sleep 60".into()],
                ..config()
            },
            ContainerConfig {
                env: vec![("A".into(), "1".into())],
                ..config()
            },
            ContainerConfig {
                files: vec![("/etc/x".into(), "x".into())],
                ..config()
            },
            ContainerConfig {
                hostname: Some("h".into()),
                ..config()
            },
            ContainerConfig {
                fallback_to_logs: true,
                ..config()
            },
            ContainerConfig {
                annotations: [("hollow.dev/logs".to_string(), "x".to_string())].into(),
                ..config()
            },
        ];
        for config in rich {
            let mut held = Held::Full(Box::new(config.clone()));
            held.slim();
            assert!(matches!(held, Held::Full(_)), "{config:?}");
            assert_eq!(*held.config(), config);
        }
    }
}
