//! The PostgreSQL peer: a fresh server answers queries, keeps a committed
//! row across a stop and a start on the same port, and accepts nothing while
//! stopped.
//!
//! Needs PostgreSQL 15 or later and `psql` (`require_postgres`); without
//! them the test is skipped, or fails under `CI=true`.

use std::time::Instant;

use glasswatch_testkit::{ports::is_listening, ports::loopback, require_postgres, Postgres};

#[test]
fn postgres_keeps_rows_across_a_restart() {
    if !require_postgres() {
        return;
    }
    let mut pg = Postgres::start().unwrap();
    let port = pg.port();
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{port}/glasswatch")
    );
    assert!(is_listening(loopback(port)));
    assert_eq!(pg.psql("SELECT 1").unwrap(), "1");
    assert_eq!(pg.psql("SELECT current_database()").unwrap(), "glasswatch");

    pg.psql("CREATE TABLE frames (seq bigint PRIMARY KEY, note text NOT NULL)")
        .unwrap();
    pg.psql("INSERT INTO frames VALUES (1, 'first'), (2, 'second')")
        .unwrap();
    assert_eq!(
        pg.psql("SELECT seq, note FROM frames ORDER BY seq")
            .unwrap(),
        "1|first\n2|second"
    );

    let err = pg.psql("SELECT * FROM no_such_table").unwrap_err();
    assert!(format!("{err:#}").contains("does not exist"), "{err:#}");

    let stopping = Instant::now();
    pg.stop().unwrap();
    eprintln!("stopped in {:?}", stopping.elapsed());
    assert!(!pg.is_running());
    assert!(!is_listening(loopback(port)), "port {port} still accepts");
    let err = pg.psql("SELECT 1").unwrap_err();
    assert!(format!("{err:#}").contains("failed"), "{err:#}");
    // Stopping twice is harmless.
    pg.stop().unwrap();

    let starting = Instant::now();
    pg.start_again().unwrap();
    eprintln!("started again in {:?}", starting.elapsed());
    assert_eq!(pg.port(), port);
    assert!(is_listening(loopback(port)));
    assert_eq!(
        pg.psql("SELECT seq, note FROM frames ORDER BY seq")
            .unwrap(),
        "1|first\n2|second"
    );
    assert!(
        pg.start_again().is_err(),
        "a second server on the same data"
    );

    let dir = pg.dir().to_owned();
    assert!(dir.join("data/PG_VERSION").exists());
    drop(pg);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!is_listening(loopback(port)));
}
