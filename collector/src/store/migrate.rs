//! The schema versions, embedded in the binary: one SQL file per version and
//! backend under `store/migrations/`, applied in order on start, each in its
//! own transaction together with the new version number
//! (`glasswatch_schema`). A database at a version newer than this binary
//! knows is refused ([`super::StoreError::TooNew`]), never written to.
//!
//! To change the schema: add `000N_what.sql` for both backends and a line
//! below; never edit a released file (databases in the field ran it).

/// Every version, `(version, SQLite, PostgreSQL)`, in order from 1.
pub const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        include_str!("migrations/sqlite/0001_init.sql"),
        include_str!("migrations/postgres/0001_init.sql"),
    ),
    (
        2,
        include_str!("migrations/sqlite/0002_viewer.sql"),
        include_str!("migrations/postgres/0002_viewer.sql"),
    ),
    (
        3,
        include_str!("migrations/sqlite/0003_latest.sql"),
        include_str!("migrations/postgres/0003_latest.sql"),
    ),
];

/// The version this binary brings a database to.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
}

/// The table holding the version (created before any migration runs).
pub const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS glasswatch_schema (\
     version BIGINT NOT NULL, applied_us BIGINT NOT NULL)";

/// What to do with a database at `found`: the migrations to apply, or the
/// refusal when it is newer than this binary. `upto` limits the target
/// (tests build old versions with it).
pub fn plan(
    found: i64,
    upto: i64,
) -> Result<Vec<(i64, &'static str, &'static str)>, super::StoreError> {
    if found > latest() {
        return Err(super::StoreError::TooNew {
            found,
            known: latest(),
        });
    }
    Ok(MIGRATIONS
        .iter()
        .copied()
        .filter(|(v, _, _)| *v > found && *v <= upto)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_dense_from_one() {
        for (i, (v, _, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v, i as i64 + 1);
        }
        assert_eq!(plan(0, latest()).unwrap().len(), MIGRATIONS.len());
        assert!(plan(latest(), latest()).unwrap().is_empty());
        assert!(matches!(
            plan(latest() + 1, latest()),
            Err(crate::store::StoreError::TooNew { .. })
        ));
    }
}
