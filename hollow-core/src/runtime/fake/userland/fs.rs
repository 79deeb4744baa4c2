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
