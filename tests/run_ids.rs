//! The run id of every planned run of every shipped sweep file, pinned.
//!
//! A run id is the hash of a run's resolved config, the data fingerprint and the seed; a
//! finished run is skipped on re-launch only while its id stays the same. A refactor that
//! moves an id (a renamed config key, a changed default, a new field in the canonical JSON)
//! would silently re-train every run it touches, so these snapshots change only on purpose.

use fer_lab::scheduler;
use fer_lab::sweep::Sweep;
use std::path::Path;

#[test]
fn shipped_sweeps_plan_the_same_run_ids() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mini = root.join("tests/fixtures/fer2013-mini");
    // Plan against the mini data, as `sweep --dry-run --data` does: ids depend on its
    // fingerprint, which the fixtures pin.
    let (data, _) = fer_lab::data::open(&mini).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(root.join("experiments"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in files {
        let sweep = Sweep::load(&path, &[], Some(&mini)).unwrap();
        let planned = scheduler::plan(&sweep, &data.manifest.fingerprint, Path::new("results"));
        let text: String = planned
            .iter()
            .map(|p| format!("{} seed={} {}\n", p.id, p.run.seed, p.label))
            .collect();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        insta::assert_snapshot!(name, text);
    }
}
