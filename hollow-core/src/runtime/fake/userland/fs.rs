//! A container's filesystem, in memory: the files a script writes and reads, and the
//! directories it makes. `/dev/null` swallows writes and reads empty.

use std::collections::{BTreeMap, BTreeSet};

/// Files by absolute path, and the directories that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fs {
    files: BTreeMap<String, String>,
    dirs: BTreeSet<String>,
}

/// The directories every container has.
const BASE_DIRS: &[&str] = &[
    "/", "/bin", "/dev", "/etc", "/proc", "/root", "/tmp", "/usr", "/var",
];

impl Default for Fs {
    fn default() -> Self {
        Fs {
            files: BTreeMap::new(),
            dirs: BASE_DIRS.iter().map(|d| d.to_string()).collect(),
        }
    }
}

/// `path` made absolute against `cwd`, with `.`, `..` and repeated slashes resolved.
pub(super) fn normalize(cwd: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{cwd}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(at) => &path[..at],
    }
}

impl Fs {
    /// A file's text; an error as `cat` words it.
    pub(super) fn read(&self, path: &str) -> Result<String, String> {
        if path == "/dev/null" {
            return Ok(String::new());
        }
        if let Some(text) = self.files.get(path) {
            return Ok(text.clone());
        }
        if self.dirs.contains(path) {
            return Err(format!("{path}: Is a directory"));
        }
        Err(format!("{path}: No such file or directory"))
    }

    /// Writes (or appends) `text`; the parent directory must exist.
    pub(super) fn write(&mut self, path: &str, text: &str, append: bool) -> Result<(), String> {
        if path == "/dev/null" {
            return Ok(());
        }
        if self.dirs.contains(path) {
            return Err(format!("{path}: Is a directory"));
        }
        if !self.dirs.contains(parent(path)) {
            return Err(format!("{path}: No such file or directory"));
        }
        let file = self.files.entry(path.to_string()).or_default();
        if !append {
            file.clear();
        }
        file.push_str(text);
        Ok(())
    }

    pub(super) fn is_file(&self, path: &str) -> bool {
        self.files.contains_key(path) || path == "/dev/null"
    }

    pub(super) fn is_dir(&self, path: &str) -> bool {
        self.dirs.contains(path)
    }

    /// Makes a directory (and, with `parents`, those above it).
    pub(super) fn mkdir(&mut self, path: &str, parents: bool) -> Result<(), String> {
        if self.dirs.contains(path) {
            return if parents {
                Ok(())
            } else {
                Err(format!("can't create directory '{path}': File exists"))
            };
        }
        if self.files.contains_key(path) {
            return Err(format!("can't create directory '{path}': File exists"));
        }
        if !self.dirs.contains(parent(path)) {
            if !parents {
                return Err(format!(
                    "can't create directory '{path}': No such file or directory"
                ));
            }
            self.mkdir(parent(path), true)?;
        }
        self.dirs.insert(path.to_string());
        Ok(())
    }

    /// Removes a file (or, with `recursive`, a directory and all in it).
    pub(super) fn remove(&mut self, path: &str, recursive: bool) -> Result<(), String> {
        if self.files.remove(path).is_some() {
            return Ok(());
        }
        if !self.dirs.contains(path) {
            return Err(format!("can't remove '{path}': No such file or directory"));
        }
        if !recursive {
            return Err(format!("'{path}' is a directory"));
        }
        if path == "/" {
            // The root is a mount point: `rm -rf /` empties it, and removing the
            // directory itself fails as rmdir(2) does on a mount point (EBUSY).
            self.files.clear();
            self.dirs.retain(|d| d == "/");
            return Err("can't remove '/': Resource busy".to_string());
        }
        let inside = format!("{}/", path.trim_end_matches('/'));
        self.files.retain(|p, _| !p.starts_with(&inside));
        self.dirs.retain(|d| d != path && !d.starts_with(&inside));
        Ok(())
    }

    /// Moves a file, or a directory and what is in it.
    pub(super) fn rename(&mut self, from: &str, to: &str) -> Result<(), String> {
        let to = if self.dirs.contains(to) {
            normalize(to, from.rsplit('/').next().unwrap_or_default())
        } else {
            to.to_string()
        };
        if let Some(text) = self.files.remove(from) {
            return self.write(&to, &text, false);
        }
        if !self.dirs.contains(from) {
            return Err(format!("can't rename '{from}': No such file or directory"));
        }
        if from == "/" || to.starts_with(&format!("{from}/")) {
            // rename(2) will not move a directory into itself (EINVAL), nor the root.
            return Err(format!("can't rename '{from}': Invalid argument"));
        }
        let inside = format!("{from}/");
        let moved = |p: &String| format!("{to}{}", &p[from.len()..]);
        let files: Vec<(String, String)> = self
            .files
            .iter()
            .filter(|(p, _)| p.starts_with(&inside))
            .map(|(p, t)| (moved(p), t.clone()))
            .collect();
        let dirs: Vec<String> = self
            .dirs
            .iter()
            .filter(|d| *d == from || d.starts_with(&inside))
            .map(moved)
            .collect();
        self.remove(from, true)?;
        self.files.extend(files);
        self.dirs.extend(dirs);
        Ok(())
    }

    /// The names in a directory, sorted; a file lists as its own path.
    pub(super) fn list(&self, path: &str) -> Result<Vec<String>, String> {
        if self.files.contains_key(path) {
            return Ok(vec![path.to_string()]);
        }
        if !self.dirs.contains(path) {
            return Err(format!("{path}: No such file or directory"));
        }
        let inside = if path == "/" {
            "/".to_string()
        } else {
            format!("{path}/")
        };
        let mut names: Vec<String> = self
            .files
            .keys()
            .chain(self.dirs.iter())
            .filter_map(|p| p.strip_prefix(&inside))
            .filter(|rest| !rest.is_empty() && !rest.contains('/'))
            .map(str::to_string)
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }
}

/// What `kubectl exec` changed in a container's files: each path written (with its
/// text) or removed, and each directory made or removed. Kept per container, only once
/// an exec changed something.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FsDiff {
    files: BTreeMap<String, Option<String>>,
    dirs: BTreeMap<String, bool>,
}

impl FsDiff {
    pub(crate) fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }

    /// Adds a later diff: where both touch a path, the later wins.
    pub(crate) fn merge(&mut self, later: FsDiff) {
        self.files.extend(later.files);
        self.dirs.extend(later.dirs);
    }
}

impl Fs {
    /// What changed from `self` to `after`.
    pub(crate) fn diff(&self, after: &Fs) -> FsDiff {
        let mut diff = FsDiff::default();
        for (path, text) in &after.files {
            if self.files.get(path) != Some(text) {
                diff.files.insert(path.clone(), Some(text.clone()));
            }
        }
        for path in self.files.keys().filter(|p| !after.files.contains_key(*p)) {
            diff.files.insert(path.clone(), None);
        }
        for dir in after.dirs.difference(&self.dirs) {
            diff.dirs.insert(dir.clone(), true);
        }
        for dir in self.dirs.difference(&after.dirs) {
            diff.dirs.insert(dir.clone(), false);
        }
        diff
    }

    /// Applies what an exec changed.
    pub(crate) fn apply(&mut self, diff: &FsDiff) {
        for (dir, made) in &diff.dirs {
            if *made {
                self.dirs.insert(dir.clone());
            } else {
                self.dirs.remove(dir);
            }
        }
        for (path, text) in &diff.files {
            match text {
                Some(text) => {
                    self.files.insert(path.clone(), text.clone());
                }
                None => {
                    self.files.remove(path);
                }
            }
        }
    }

    /// Whether a file is at `path` (an absolute path).
    pub(crate) fn has_file(&self, path: &str) -> bool {
        self.files.contains_key(path)
    }

    /// The files below the directory `dir` (an absolute path), by their path in it.
    pub(crate) fn files_under<'a>(
        &'a self,
        dir: &str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let inside = format!("{}/", dir.trim_end_matches('/'));
        self.files
            .range(inside.clone()..)
            .map_while(move |(path, text)| {
                let rest = path.strip_prefix(&inside)?;
                Some((rest, text.as_str()))
            })
    }

    /// Adds the file at `path` (an absolute path) unless there is one, making the
    /// directories above it.
    pub(crate) fn add_missing(&mut self, path: &str, text: &str) {
        if self.files.contains_key(path) || self.dirs.contains(path) {
            return;
        }
        if self.mkdir(parent(path), true).is_ok() {
            self.files.insert(path.to_string(), text.to_string());
        }
    }
}

/// The page httpd's image serves from its document root.
const HTTPD_INDEX: &str = "<html><body><h1>It works!</h1></body></html>\n";
/// nginx's welcome page, shortened.
const NGINX_INDEX: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body>\n<h1>Welcome to nginx!</h1>\n</body>\n</html>\n";

/// agnhost's TLS files, at the root it serves from (their text is a stand-in).
const AGNHOST_CERT: &str = "-----BEGIN CERTIFICATE-----\nhollow\n-----END CERTIFICATE-----\n";
const AGNHOST_KEY: &str = "-----BEGIN PRIVATE KEY-----\nhollow\n-----END PRIVATE KEY-----\n";

/// A well-known web server: its image, the word its command must hold (when the
/// image serves only with it), where it serves files from on port 80, and what is there.
struct WebServer {
    image: &'static str,
    program: Option<&'static str>,
    docroot: &'static str,
    files: &'static [(&'static str, &'static str)],
}

const WEB_SERVERS: &[WebServer] = &[
    WebServer {
        image: "httpd",
        program: None,
        docroot: "/usr/local/apache2/htdocs",
        files: &[("index.html", HTTPD_INDEX)],
    },
    WebServer {
        image: "nginx",
        program: None,
        docroot: "/usr/share/nginx/html",
        files: &[("index.html", NGINX_INDEX), ("50x.html", NGINX_INDEX)],
    },
    // `agnhost test-webserver` serves the image's root, as upstream's StatefulSet
    // tests run it (test/e2e/framework/statefulset/fixtures.go).
    WebServer {
        image: "agnhost",
        program: Some("test-webserver"),
        docroot: "/",
        files: &[
            ("localhost.crt", AGNHOST_CERT),
            ("localhost.key", AGNHOST_KEY),
        ],
    },
];

/// An image's name without its registry, tag or digest (`httpd` for
/// `registry.k8s.io/e2e-test-images/httpd:2.4.38-4`).
fn image_name(image: &str) -> &str {
    let path = image.split('@').next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    last.split(':').next().unwrap_or_default()
}

fn web_server(image: &str, command: &[String]) -> Option<&'static WebServer> {
    let name = image_name(image);
    WEB_SERVERS.iter().find(|w| {
        w.image == name
            && w.program
                .is_none_or(|p| command.iter().any(|word| word == p))
    })
}

/// Where a well-known web server serves files from on port 80 (none for other
/// containers).
pub(crate) fn docroot(image: &str, command: &[String]) -> Option<&'static str> {
    web_server(image, command).map(|w| w.docroot)
}

/// The files a container of `image` running `command` starts with: every
/// container's directories, and for a well-known web server the files it serves.
pub(crate) fn image_files(image: &str, command: &[String]) -> Fs {
    let mut fs = Fs::default();
    if let Some(web) = web_server(image, command) {
        fs.mkdir(web.docroot, true).ok();
        for (name, text) in web.files {
            fs.write(&normalize(web.docroot, name), text, false).ok();
        }
    }
    fs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_applied_to_the_files_before_gives_the_files_after() {
        let before = image_files("registry.k8s.io/e2e-test-images/httpd:2.4.38-4", &[]);
        assert!(before.has_file("/usr/local/apache2/htdocs/index.html"));
        let mut after = before.clone();
        after
            .rename("/usr/local/apache2/htdocs/index.html", "/tmp")
            .unwrap();
        after.mkdir("/srv/a", true).unwrap();
        let diff = before.diff(&after);
        assert!(!diff.is_empty());
        let mut replayed = before.clone();
        replayed.apply(&diff);
        assert_eq!(replayed, after);
        assert!(replayed.has_file("/tmp/index.html"));
        assert!(before.diff(&before).is_empty());
    }

    #[test]
    fn the_root_survives_being_removed_or_moved() {
        let mut fs = Fs::default();
        fs.mkdir("/a/b", true).unwrap();
        fs.write("/a/b/f", "x", false).unwrap();
        assert!(fs.rename("/a", "/a/b").is_err());
        assert!(fs.rename("/", "/tmp").is_err());
        assert!(fs.has_file("/a/b/f"));
        assert!(fs.remove("/", true).is_err());
        assert!(fs.is_dir("/") && !fs.is_dir("/a") && !fs.has_file("/a/b/f"));
        // Making a path again after `rm -rf /` walks up to the root and stops there.
        fs.mkdir("/a/b", true).unwrap();
        assert!(fs.is_dir("/a/b"));
    }

    #[test]
    fn only_well_known_web_images_serve_files() {
        assert_eq!(docroot("nginx:1.27", &[]), Some("/usr/share/nginx/html"));
        let digest = "docker.io/library/nginx@sha256:ab";
        assert_eq!(docroot(digest, &[]), Some("/usr/share/nginx/html"));
        assert_eq!(docroot("busybox", &[]), None);
        assert_eq!(image_files("busybox", &[]), Fs::default());
        let agnhost = "registry.k8s.io/e2e-test-images/agnhost:2.56";
        assert_eq!(docroot(agnhost, &["netexec".into()]), None);
        let serving = image_files(agnhost, &["test-webserver".into()]);
        assert!(serving.has_file("/localhost.crt"));
    }
}
