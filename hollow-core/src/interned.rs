//! Strings many pods repeat (images, container names), held once per process.
//!
//! A node holds a container's name and image as long as its pod runs, and so does the
//! fake runtime; at thousands of pods of a few Deployments the same few strings are
//! otherwise kept tens of thousands of times, each its own allocation. The table holds
//! a string while anything else does: entries nothing else holds are dropped when the
//! table has doubled since they were last looked for, so a process that churns names
//! does not keep them.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;

/// The strings this process holds once.
static TABLE: LazyLock<Mutex<Table>> = LazyLock::new(Mutex::default);

/// Below this many entries the table is never swept.
const SWEEP_FLOOR: usize = 64;

#[derive(Default)]
struct Table {
    strings: HashSet<Arc<str>>,
    /// How many entries there were when unused ones were last dropped.
    swept_at: usize,
}

/// `text`, shared with every other holder of the same string in this process.
pub(crate) fn intern(text: &str) -> Arc<str> {
    let mut table = TABLE.lock();
    if let Some(held) = table.strings.get(text) {
        return held.clone();
    }
    if table.strings.len() >= 2 * table.swept_at.max(SWEEP_FLOOR) {
        table.strings.retain(|held| Arc::strong_count(held) > 1);
        table.swept_at = table.strings.len();
    }
    let held: Arc<str> = text.into();
    table.strings.insert(held.clone());
    held
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_are_one_allocation() {
        let a = intern("registry.k8s.io/pause:3.10-interned-test");
        let b = intern(&String::from("registry.k8s.io/pause:3.10-interned-test"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(&*a, "registry.k8s.io/pause:3.10-interned-test");
        assert!(!Arc::ptr_eq(&a, &intern("another-interned-test")));
    }

    #[test]
    fn strings_nothing_holds_are_dropped_as_the_table_grows() {
        // Many strings held by no one: the table does not keep them all.
        for i in 0..10 * SWEEP_FLOOR {
            drop(intern(&format!("churned-interned-test-{i}")));
        }
        let kept = intern("kept-interned-test");
        let held = TABLE
            .lock()
            .strings
            .iter()
            .filter(|s| s.starts_with("churned-interned-test-"))
            .count();
        assert!(held < 10 * SWEEP_FLOOR, "{held} churned strings kept");
        // What someone holds stays the one shared copy.
        for i in 0..10 * SWEEP_FLOOR {
            drop(intern(&format!("churned-again-interned-test-{i}")));
        }
        assert!(Arc::ptr_eq(&kept, &intern("kept-interned-test")));
    }
}
