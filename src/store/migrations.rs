//! The schema, as the numbered SQL files in `migrations/`, applied in order on open and
//! recorded in the database (`PRAGMA user_version`). Released files are never edited: the
//! test below pins their checksums.

use rusqlite_migration::{M, Migrations};

/// Every migration file, in order. Add new ones at the end.
pub const FILES: &[(&str, &str)] = &[
    (
        "0001_initial.sql",
        include_str!("../../migrations/0001_initial.sql"),
    ),
    (
        "0002_scheduler.sql",
        include_str!("../../migrations/0002_scheduler.sql"),
    ),
    (
        "0003_dashboard.sql",
        include_str!("../../migrations/0003_dashboard.sql"),
    ),
    (
        "0004_report_views.sql",
        include_str!("../../migrations/0004_report_views.sql"),
    ),
    (
        "0005_resume_and_order.sql",
        include_str!("../../migrations/0005_resume_and_order.sql"),
    ),
    (
        "0006_fused_groups.sql",
        include_str!("../../migrations/0006_fused_groups.sql"),
    ),
    (
        "0007_journals.sql",
        include_str!("../../migrations/0007_journals.sql"),
    ),
    (
        "0008_predictions.sql",
        include_str!("../../migrations/0008_predictions.sql"),
    ),
];

/// Schema version of a database with every migration applied.
pub const LATEST: usize = FILES.len();

/// The oldest schema readers (`report`, `runs`, `sql`, the dashboard, `predict`) read as it
/// is, since readers never migrate. They query the views of 0004; 0005 adds the scheduler's
/// failure count (no reader uses it) and orders the leaderboard view (readers sort their
/// own rows), so a version-4 database reads correctly; 0006's fused groups are read only
/// where the schema has them ([`super::Store::has_fused_groups`]). Raise this when a
/// migration adds something a reader needs.
pub const READABLE_FROM: usize = 4;

pub fn migrations() -> Migrations<'static> {
    Migrations::new(FILES.iter().map(|(_, sql)| M::up(sql)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// sha256 of each released migration. A mismatch means a released file was edited:
    /// put the change in a new migration instead.
    const RELEASED: &[(&str, &str)] = &[
        (
            "0001_initial.sql",
            "f63c0f9e85e0de4b8a869b94906955b737cd22725504776c034ad4426afd5b30",
        ),
        (
            "0002_scheduler.sql",
            "3c2941f1be7e935073eec7d8a4aeb8cee8ee8acb2f53bdb3de06be601572cb99",
        ),
        (
            "0003_dashboard.sql",
            "7dbe67ce06ae70564fbc0864af8cefc16c1152eb3c2bcc5d9c782a18cad942a3",
        ),
        (
            "0004_report_views.sql",
            "2710cd1308b3dfcf59e87e43e5bee53de069ce91e1201a429f5ebb1740ecdf35",
        ),
        (
            "0005_resume_and_order.sql",
            "d29e47551827521604558f91fedfb75950fd013dc5a3a8037c2bab25b3024012",
        ),
        (
            "0006_fused_groups.sql",
            "2e8ed6419c0929b2c8dad6aa4042a15f6b92275da8d8ed7cebff14946027a867",
        ),
        (
            "0007_journals.sql",
            "ee333926ca3fc25b3ecbb942f6dfa61025385e92c307002702da44a36fcef5a9",
        ),
        (
            "0008_predictions.sql",
            "c286bbf61b5cbecf7c9bc4660f82f759bb0682bcfe23ad3587cd7b899dd9e53d",
        ),
    ];

    #[test]
    fn migrations_apply_to_an_empty_database() {
        assert!(migrations().validate().is_ok());
    }

    #[test]
    fn every_file_in_migrations_is_listed_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        let listed: Vec<&str> = FILES.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, listed);
        for (i, name) in listed.iter().enumerate() {
            assert!(
                name.starts_with(&format!("{:04}_", i + 1)),
                "{name} out of sequence"
            );
        }
    }

    #[test]
    fn released_migrations_are_unchanged() {
        for (name, sum) in RELEASED {
            let (_, sql) = FILES
                .iter()
                .find(|(n, _)| n == name)
                .expect("released file listed");
            let actual = crate::data::cache::hex(&Sha256::digest(sql.as_bytes()));
            assert_eq!(&actual, sum, "{name} was edited after release");
        }
    }
}
